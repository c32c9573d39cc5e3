"""Decoding media files into mono float32 audio at an encoder's sample rate."""

from indexer.media.decode import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, MEDIA_EXTENSIONS, DecodedAudio, decode_audio

__all__ = ["AUDIO_EXTENSIONS", "VIDEO_EXTENSIONS", "MEDIA_EXTENSIONS", "DecodedAudio", "decode_audio"]
