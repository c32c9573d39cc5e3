"""`--model auto`: the strongest registered model whose files are already on this machine.

Never downloads: a build must not start a multi-GB transfer unasked. When no LAION-CLAP model is on disk
the bundled starter is chosen, and the choice carries one line telling the user what they are missing and
the command that fetches it; the command line prints it, the library only returns it.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.encoders.registry import AUTO_MODEL, AUTO_ORDER, DEFAULT_MODEL


@dataclass(frozen=True)
class ModelChoice:
    """The model `auto` (or an explicit name) resolved to, and a hint for the user when it could be better."""

    model: str
    hint: str | None = None


def choose_model(requested: str = AUTO_MODEL) -> ModelChoice:
    """Resolve `requested`: a name or path is kept as is; `auto` becomes the first model of AUTO_ORDER
    whose checkpoint and tokenizer files are all on disk, else DEFAULT_MODEL with a hint."""
    if requested != AUTO_MODEL:
        return ModelChoice(requested)
    from indexer.encoders.model_store import model_status

    statuses = [model_status(name) for name in AUTO_ORDER]
    for status in statuses:
        if status.present:
            return ModelChoice(status.entry.name)
    best = AUTO_ORDER[0]
    partial = next((s for s in statuses if s.checkpoint.path is not None), None)
    if partial is not None:
        missing = ", ".join(f.label for f in partial.missing)
        hint = (f"using the bundled {DEFAULT_MODEL} model: {partial.entry.name} is on disk but lacks {missing}; "
                f"complete it with `indexer models download {partial.entry.name}`")
    else:
        hint = (f"using the bundled {DEFAULT_MODEL} model; LAION-CLAP ({best}) is far stronger on real recordings: "
                f"fetch it once with `indexer models download {best}`")
    return ModelChoice(DEFAULT_MODEL, hint)
