"""A resound plugin for tests: `*.tones` checkpoint files load the transparent ToneEncoder.

Subprocess tests name this module in $RESOUND_PLUGINS so that real `indexer` processes start in seconds.
"""

from indexer.encoders.resolver import register_family
from tests.helpers import ToneEncoder

register_family("test_tones", lambda checkpoint, model_id, *_: ToneEncoder(model_id, checkpoint), (".tones",))
