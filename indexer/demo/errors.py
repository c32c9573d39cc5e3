"""Errors of the demo-corpus generator, as part of resound's domain exceptions."""

from __future__ import annotations

from indexer.errors import ResoundError


class DemoCorpusError(ResoundError):
    """Base class of the demo-corpus generator's errors."""


class UnknownSampleSetError(DemoCorpusError):
    """A sample-set name that is not in the registry."""


class SampleSetNotInstalledError(DemoCorpusError):
    """A registered sample set whose files are missing; the message names the Debian package."""


class UnknownSoundClassError(DemoCorpusError):
    """A class label that is not in the class table."""


class SoundClassUnavailableError(DemoCorpusError):
    """A class the chosen sample set cannot render with its own samples."""


class UnknownSceneError(DemoCorpusError):
    """A scene name that is not in the scene table."""


class RenderError(DemoCorpusError):
    """An external renderer (fluidsynth, timidity, espeak-ng) failed or used samples it must not."""
