"""Default limits on what one file may cost a build. A module of its own so that the CLI can show them
in `--help` without importing the build (numpy, the catalog)."""

# A file whose audio goes on longer than this fails as too long (decoding stops there, whatever its header
# says): a day, far beyond any recording one searches by window, and a bound on what a lying file costs.
DEFAULT_MAX_FILE_SECONDS = 24 * 3600.0
