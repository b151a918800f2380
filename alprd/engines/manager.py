"""Make engines current and load them: plan (config -> one target per role),
ensure (lock, check, build in a child, validate, install), load."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alprd import __version__
from alprd import config as cfgmod
from alprd.engines import cache, child, registry, samples, trust
from alprd.engines import fingerprint as fp
from alprd.engines.backends._cpu import cpu_threads
from alprd.engines.base import (
    ENGINE_FORMAT,
    KIND,
    ROLES,
    Backend,
    BuildRequest,
    Engine,
    EngineError,
    InputShape,
    Role,
    Tolerances,
    effective_precision,
)
from alprd.engines.validate import Validation
from alprd.hashing import sha256_file
from alprd.log import get_logger

log = get_logger("alprd.engines")


@dataclass(frozen=True)
class Overrides:
    """Command-line choices that replace the config's for one run."""

    backend: str | None = None
    precision: str | None = None
    workspace_gb: float | None = None
    batch_size: int | None = None
    calibration: Path | None = None
    validation: tuple[Path, ...] | None = None  # e.g. recent camera frames


@dataclass(frozen=True)
class Target:
    """One role's engine: what to build, where, and what it depends on."""

    request: BuildRequest
    backend: Backend
    engine: Path
    inputs: fp.FingerprintInputs
    choice_reason: str
    requested_precision: str


def plan(config: cfgmod.Config, role: Role, overrides: Overrides = Overrides()) -> Target:
    """The target for `role`. Raises EngineError (missing model, runtime, calibration)."""
    e = config.engines
    rc = getattr(config.models, role)
    choice = registry.choose(overrides.backend or rc.backend or e.backend)
    backend = registry.load_backend(choice.backend)
    requested = overrides.precision or rc.precision or e.precision
    precision = effective_precision(backend, requested)
    batch = overrides.batch_size or rc.batch_size or e.batch_size
    if KIND[role] == "detector":
        shape = InputShape(batch, *rc.input_hw)
    else:
        shape = InputShape(batch, rc.input_height, rc.input_width)
    source = rc.source
    if not source.is_file():
        raise EngineError(
            f"models.{role}.source: {source} not found; run `alprd models fetch` or fix the path"
        )
    calibration: tuple[Path, ...] = ()
    calibration_sha = None
    if precision == "int8":
        calib = overrides.calibration or e.calibration
        if calib is None:
            raise EngineError(
                f"{role}: int8 needs calibration images: pass --calibration PATH or set "
                "engines.calibration (a directory of images or a YAML list)"
            )
        calibration = samples.image_list(calib)
        calibration_sha = samples.images_sha256(calibration)
    v = e.validation
    validation = overrides.validation or (samples.image_list(v.images) if v.images else calibration)
    workspace = overrides.workspace_gb or e.workspace_gb
    request = BuildRequest(
        role=role,
        source=source,
        backend=backend.name,
        precision=precision,
        shape=shape,
        workspace_gb=workspace,
        calibration=calibration,
        validation=validation,
        tolerances=Tolerances(
            conf=v.conf, iou_min=v.iou_min, score_tol=v.score_tol, min_match=v.min_match
        ),
        classes=tuple(getattr(rc, "classes", ())),
        streams=cpu_streams(config, backend.name),
    )
    inputs = fp.FingerprintInputs(
        source_sha256=sha256_file(source),
        role=role,
        input_shape=(shape.batch, 3, shape.height, shape.width),
        precision=precision,
        backend=backend.name,
        runtime_version=backend.runtime_version(),
        device=backend.device_identity(),
        backend_settings={"workspace_gb": f"{workspace:g}"} if backend.name == "tensorrt" else {},
        calibration_sha256=calibration_sha,
        engine_format=ENGINE_FORMAT,
    )
    if precision != requested:
        log.warning(
            "precision_unsupported", model=role, backend=backend.name, requested=requested,
            using=precision,
        )  # fmt: skip
    engine = cache.engine_path(source, backend.extension)
    _check_trust(config, role, [source.parent, source, engine, cache.sidecar_path(engine)])
    return Target(request, backend, engine, inputs, choice.reason, requested)


#: backends whose "auto" streams follow the camera count. Measured with 4 cameras
#: on 2 cores (`make bench`, BENCHMARKS.md): ONNX Runtime 1.37x faster with two
#: 1-thread inferences at once than one 2-thread inference after another;
#: OpenVINO 0.87x (its single stream already keeps both cores busy): it stays at 1.
_STREAMS_PER_CAMERA = ("onnxruntime",)


def interim(backend: str) -> list[tuple[str, str]]:
    """What may serve a role at once while its `backend` engine builds (background
    start-up), best first, as (backend, precision): where the engines are TensorRT
    (minutes to build, longer on a Jetson) and torch sees an NVIDIA GPU, the torch
    backend (fp16 on the same GPU, built in seconds from the same ONNX; detectors
    and alprd's recogniser); then ONNX Runtime fp32 on the CPU, which serves any
    model."""
    out = []
    if backend == "tensorrt" and registry.installed("torch") and registry.cuda_gpu_present():
        out.append(("torch", "fp16"))
    out.append(("onnxruntime", "fp32"))
    return out


def cpu_streams(config: cfgmod.Config, backend: str = "onnxruntime") -> int:
    """`engines.streams` resolved for `backend`: "auto" runs one inference per
    camera at once, up to the cores this process may use, where that was measured
    to pay (ONNX Runtime); one (on every core) elsewhere and for a single camera."""
    streams = config.engines.streams
    if streams != "auto":
        return streams
    if backend not in _STREAMS_PER_CAMERA:
        return 1
    return max(1, min(len(config.cameras), cpu_threads()))


def _check_trust(config: cfgmod.Config, role: Role, files: list[Path]) -> None:
    """Refuse a model another user could have written (a .pt is a pickle: loading
    it runs code), unless models.allow_unsafe_permissions (see alprd.engines.trust)."""
    paths = list(dict.fromkeys([config.paths.models_dir, *files]))
    found = trust.problems(paths)
    if not found:
        return
    if config.models.allow_unsafe_permissions:
        log.warning(
            "models_unsafe_permissions", model=role, problem="; ".join(found),
            action="loaded anyway (models.allow_unsafe_permissions = true)",
        )  # fmt: skip
        return
    raise EngineError(
        f"models.{role}: refusing to load a model another user could have written: "
        + "; ".join(found)
        + " (a .pt is a pickle: loading it runs code). Fix the owner or mode "
        "(chmod go-w, chown), or set models.allow_unsafe_permissions = true"
    )


Status = Literal["current", "built", "rejected", "failed", "cancelled"]


@dataclass(frozen=True)
class Outcome:
    role: Role
    status: Status
    engine: Path | None
    backend: str
    precision: str
    reasons: list[str] = field(default_factory=list)  # why it was (re)built
    build_s: float = 0.0
    size: int = 0
    message: str = ""
    validation: Validation | None = None  # the engine against its source (built or rejected)
    #: the model itself is at fault (unfit for the role, unreadable, its engine
    #: disagrees with it), not the machine (a crash, a timeout, a missing runtime)
    model_fault: bool = False


def ensure(
    target: Target,
    *,
    force: bool = False,
    timeout_s: float = 3600.0,
    nice: int = 0,
    on_progress: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    quiet: bool = False,
) -> Outcome:
    """Make `target`'s engine current: build it unless it already is (or `force`).
    Never raises for a build that fails: the outcome says why; an engine already
    installed is left untouched. `cancel()` turning true (a stop request) kills the
    build child within a tenth of a second: status "cancelled", nothing installed.
    `quiet`: a failed or rejected build is logged at info only (the caller logs
    its own line)."""
    req = target.request
    failed = log.info if quiet else log.error

    def outcome(status: Status, **kw: Any) -> Outcome:
        return Outcome(req.role, status, target.engine, req.backend, req.precision, **kw)

    def waiting(holder: str) -> None:
        log.info("engine_build_waiting", model=req.role, holder=holder)

    with cache.locked(target.engine, on_wait=waiting):
        reasons = ["forced"] if force else cache.check(target.engine, target.inputs)
        if not reasons:
            return outcome("current", size=target.engine.stat().st_size)
        if reasons == ["forced"]:
            log.info("engine_rebuild_forced", model=req.role, engine=str(target.engine))
        elif target.engine.exists() or reasons != ["missing"]:
            log.warning(
                "engine_stale", model=req.role, reason=",".join(reasons), engine=str(target.engine)
            )
        cache.remove_temporaries(target.engine)
        tmp = cache.temporary_path(target.engine)
        try:
            log.info(
                "engine_build_started",
                model=req.role,
                backend=req.backend,
                precision=req.precision,
                source=str(req.source),
            )
            started = time.monotonic()
            result = child.run(
                req, target.engine, tmp, timeout_s=timeout_s, nice=nice,
                on_progress=on_progress, cancel=cancel,
            )  # fmt: skip
            build_s = round(time.monotonic() - started, 1)
            if result.cancelled:
                log.info("engine_build_cancelled", model=req.role, build_s=build_s)
                return outcome("cancelled", reasons=reasons, build_s=build_s, message="cancelled")
            if result.error:
                failed("engine_build_failed", model=req.role, reason=result.error)
                return outcome(
                    "failed", reasons=reasons, build_s=build_s, message=result.error,
                    model_fault=result.rejected,
                )  # fmt: skip
            validation = result.validation
            assert validation is not None  # a child that ends well sends it (`child.run`)
            if not validation.passed:
                failed(
                    "engine_rejected", model=req.role, precision=req.precision,
                    reason=validation.reason, **validation.metrics,
                )  # fmt: skip
                return outcome(
                    "rejected", reasons=reasons, build_s=build_s, validation=validation,
                    message=f"validation failed: {validation.reason}", model_fault=True,
                )  # fmt: skip
            sidecar = cache.Sidecar(
                fingerprint=fp.fingerprint(target.inputs),
                inputs=target.inputs.as_dict(),
                engine_sha256=sha256_file(tmp),
                engine_size=tmp.stat().st_size,
                built_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                build_s=build_s,
                validation=asdict(validation),
                model=result.model,
                alprd_version=__version__,
            )
            try:
                cache.install(tmp, target.engine, sidecar)
            except OSError as exc:  # e.g. an engine file another user owns, a full disk
                why = f"the engine could not be installed at {target.engine}: {exc.strerror or exc}"
                failed("engine_build_failed", model=req.role, reason=why)
                return outcome("failed", reasons=reasons, build_s=build_s, message=why)
        finally:
            tmp.unlink(missing_ok=True)
    log.info(
        "engine_built", model=req.role, backend=req.backend, precision=req.precision,
        build_s=build_s, size_mb=round(sidecar.engine_size / 1e6, 1), engine=str(target.engine),
    )  # fmt: skip
    return outcome(
        "built", reasons=reasons, build_s=build_s, size=sidecar.engine_size,
        validation=validation,
    )  # fmt: skip


def load(target: Target) -> tuple[Engine, cache.Sidecar]:
    """Load a current engine. EngineError when it is stale or cannot be loaded."""
    reasons = cache.check(target.engine, target.inputs)
    if reasons:
        raise EngineError(f"{target.engine}: not current ({','.join(reasons)})")
    sidecar = cache.read_sidecar(target.engine)
    try:
        engine = target.backend.load(target.engine, target.request)
    except EngineError:
        raise
    except Exception as exc:  # a runtime's own deserialisation error
        raise EngineError(f"{target.engine}: cannot be loaded: {exc}") from exc
    return engine, sidecar


def roles_from(names: Sequence[str]) -> list[Role]:
    if "all" in names:
        return ["vehicle", "plate", "ocr"]
    return [r for r in ROLES if r in names]
