"""resound's search side: how vectors answer questions (query, similar, classify, evaluation)."""

from db.filters import SearchFilter
from search.engine import Engine, Hit

__all__ = ["Engine", "Hit", "SearchFilter"]
