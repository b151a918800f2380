"""Process exit codes: one per failure class, so systemd and scripts can tell them apart.

The numbers follow sysexits.h where one fits. `RestartPreventExitStatus=` in the unit
names CONFIG: restarting cannot fix a bad configuration file.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: The command ran but what it was asked to do failed (e.g. a download).
    FAILURE = 1
    #: Bad command line (argparse's own code).
    USAGE = 2
    #: An unexpected fatal error in the daemon (see the log).
    FATAL = 70  # EX_SOFTWARE
    #: A model file is missing, or its sha256 does not match the pinned one.
    MODEL = 65  # EX_DATAERR
    #: An engine could not be built, validated or loaded.
    ENGINE = 73  # EX_CANTCREAT
    #: The configuration file is missing, unreadable, not TOML, or fails validation.
    CONFIG = 78  # EX_CONFIG
