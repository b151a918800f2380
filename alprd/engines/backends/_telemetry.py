"""OpenVINO's telemetry, off: the consent file ``opt_in_out --opt_out`` writes
(in ``$HOME``: the state directory under systemd), written by alprd itself so
that its units need no ``ExecStartPre=`` and nothing is sent."""

from __future__ import annotations

import contextlib


def opt_out() -> bool:
    """Record "declined" in OpenVINO's consent file unless it says so already;
    whether it does now (False where there is no telemetry package or no home to
    write to: then nothing can be sent either)."""
    try:
        from openvino_telemetry.utils.opt_in_checker import (  # type: ignore[import-untyped,unused-ignore]
            ConsentCheckResult,
            OptInChecker,
        )
    except ImportError:
        return False
    checker = OptInChecker()
    with contextlib.suppress(Exception):  # a read-only home: the checker says why
        if checker.check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED:
            return True
        return bool(checker.update_result(ConsentCheckResult.DECLINED))
    return False


opt_out()  # on import: `alprd.engines.backends.openvino` imports this before openvino
