"""The Kubernetes manifest and the deployment guide, checked without a cluster.

Every document of ``deploy/k8s/genarm-serve.yaml`` is validated against the
official Kubernetes JSON schemas (strict: unknown fields are errors), as
bundled offline by the ``kubernetes-validate`` package. Then the things a
schema cannot see: the embedded deployment config parses and agrees with the
pod (GPUs, host, port, paths), the probes reach ``/health``, the grace period
covers the server's drain, Prometheus scrapes ``/metrics``, and every config
block in ``docs/deploy.md`` parses too.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from functools import cache
from pathlib import Path, PurePosixPath

import kubernetes_validate
import pytest
import yaml

from genarm.config import ConfigError, DeploymentConfig, parse_config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "k8s" / "genarm-serve.yaml"
GUIDE = ROOT / "docs" / "deploy.md"
# The oldest Kubernetes the manifest claims (docs/deploy.md), and the newest schemas bundled.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
GPU = "nvidia.com/gpu"
# Not read from the source: an allowance for the engine processes' teardown on GPUs
# (docs/deploy.md, "Graceful shutdown").
ENGINE_TEARDOWN_SECONDS = 15
# A cold start compiles base and ARMs: the startup probe must allow at least this.
MIN_STARTUP_WINDOW_SECONDS = 20 * 60


# --- loading ---------------------------------------------------------------------------


@cache
def documents() -> tuple[dict, ...]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]
    for i, doc in enumerate(docs):
        assert isinstance(doc, dict), f"{MANIFEST.name}: document {i} is not a mapping"
    return tuple(docs)


def label(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def the(kind: str, name: str | None = None) -> dict:
    found = [d for d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    what = f"{kind}/{name}" if name else kind
    assert len(found) == 1, f"{MANIFEST.name}: expected one {what}, found {len(found)}"
    return found[0]


def pod_spec() -> dict:
    return the("Deployment")["spec"]["template"]["spec"]


def container() -> dict:
    containers = pod_spec()["containers"]
    assert len(containers) == 1, f"expected one container in the Deployment, got {containers}"
    return containers[0]


def serve_args() -> argparse.Namespace:
    """The container's command parsed by `genarm serve`'s own argument parser."""
    command = [*container().get("command", []), *container().get("args", [])]
    assert command[:2] == ["genarm", "serve"], (
        f"the container must run `genarm serve ...` (command + args), got {shlex.join(command)}"
    )
    try:
        return cli_parser().parse_args(command[2:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(command)}`: not valid `genarm serve` arguments")


@cache
def cli_parser() -> argparse.ArgumentParser:
    """`genarm serve`'s parser, built from server/cli.py's ``add_arguments`` alone
    (importing the module would import the engine, torch included: seconds)."""
    source = (ROOT / "server" / "cli.py").read_text()
    func = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "add_arguments"
    )
    namespace: dict = {"argparse": argparse}
    exec(compile(ast.Module(body=[func], type_ignores=[]), "server/cli.py", "exec"), namespace)
    parser = argparse.ArgumentParser(prog="genarm serve")
    namespace["add_arguments"](parser)
    return parser


def configmap_for(path: str) -> tuple[dict, str]:
    """The ConfigMap and key that a file path in the container comes from."""
    for mount in container().get("volumeMounts", []):
        mount_path = PurePosixPath(mount["mountPath"])
        file = PurePosixPath(path)
        if mount_path not in file.parents:
            continue
        volume = volume_named(mount["name"])
        assert "configMap" in volume, (
            f"{path} is on volume {mount['name']!r}, which is not a ConfigMap volume"
        )
        relative = str(file.relative_to(mount_path))
        items = volume["configMap"].get("items")
        key = relative
        if items is not None:
            matches = [item["key"] for item in items if item["path"] == relative]
            assert matches, f"ConfigMap volume {mount['name']!r} has no item at {relative!r}"
            key = matches[0]
        return the("ConfigMap", volume["configMap"]["name"]), key
    pytest.fail(f"no volume is mounted above {path}")


def volume_named(name: str) -> dict:
    volumes = [v for v in pod_spec().get("volumes", []) if v["name"] == name]
    assert len(volumes) == 1, f"the pod has {len(volumes)} volumes named {name!r}"
    return volumes[0]


def mount_of(path: str) -> dict:
    """The deepest volume mount holding ``path``."""
    holders = [
        m
        for m in container().get("volumeMounts", [])
        if PurePosixPath(m["mountPath"]) == PurePosixPath(path)
        or PurePosixPath(m["mountPath"]) in PurePosixPath(path).parents
    ]
    assert holders, f"{path} is not on any volume mounted in the container"
    return max(holders, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))


@cache
def served_config() -> DeploymentConfig:
    configmap, key = configmap_for(serve_args().config)
    text = (configmap.get("data") or {}).get(key)
    assert text, f"{label(configmap)} has no data key {key!r} (the --config file)"
    try:
        return parse_config(yaml.safe_load(text), source=f"{label(configmap)}:{key}")
    except ConfigError as err:
        pytest.fail(f"the served config does not parse:\n{err}")


def container_port() -> int:
    ports = container().get("ports", [])
    assert len(ports) == 1, f"expected one container port, got {ports}"
    return ports[0]["containerPort"]


def resolve_port(port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of a container port."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container().get("ports", []) if p.get("name") == port]
    assert named, f"no container port is named {port!r}"
    return named[0]


def read_constant(relpath: str, name: str) -> float:
    """A module-level ``NAME = number`` from the server's source, without importing it."""
    for node in ast.parse((ROOT / relpath).read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return float(ast.literal_eval(node.value))
    pytest.fail(f"{relpath} no longer defines {name}; update this test")


def read_keyword(relpath: str, keyword: str) -> float:
    """The value of ``keyword=<number>`` in a call in the server's source."""
    for node in ast.walk(ast.parse((ROOT / relpath).read_text())):
        if isinstance(node, ast.keyword) and node.arg == keyword:
            return float(ast.literal_eval(node.value))
    pytest.fail(f"{relpath} no longer passes {keyword}=...; update this test")


# --- the schemas -----------------------------------------------------------------------


def test_manifest_has_the_expected_documents():
    kinds = sorted(label(d) for d in documents())
    assert kinds == sorted(
        [
            "ConfigMap/genarm-serve-config",
            "Deployment/genarm-serve",
            "PersistentVolumeClaim/genarm-cache",
            "PersistentVolumeClaim/genarm-models",
            "Service/genarm-serve",
        ]
    ), f"{MANIFEST.name} holds {kinds}"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_document_matches_the_kubernetes_schema(version):
    errors = []
    for doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path) or "<root>"
            errors.append(f"{label(doc)} at {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError as err:
            errors.append(f"{label(doc)}: {err.message}")
    assert not errors, f"Kubernetes {version} schema errors:\n" + "\n".join(errors)


def test_the_schema_check_catches_an_unknown_field():
    """Strict mode is what turns a misspelt field into an error: keep it on."""
    broken = yaml.safe_load(yaml.safe_dump(the("Deployment")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


# --- the config and the pod agree --------------------------------------------------------


def test_served_config_parses_and_gets_the_gpus_it_shards_over():
    cfg = served_config()
    engine = cfg.engine
    assert engine.nnodes == 1, "one pod is one host: nnodes must be 1 (docs/deploy.md, section 2)"
    needed = engine.tensor_parallel_size * engine.pipeline_parallel_size
    resources = container().get("resources", {})
    limit = resources.get("limits", {}).get(GPU)
    assert limit is not None, f"the container has no {GPU} limit"
    assert int(limit) == needed, (
        f"the container's {GPU} limit is {limit} but the config's tensor_parallel_size x "
        f"pipeline_parallel_size is {needed}"
    )
    request = resources.get("requests", {}).get(GPU, limit)
    assert int(request) == int(limit), f"{GPU} request {request} differs from its limit {limit}"
    assert engine.kv_cache_gib is None, (
        "on GPUs set engine.kv_cache_gib: null so that vLLM sizes the KV cache from "
        f"gpu_memory_utilization (got {engine.kv_cache_gib} GiB)"
    )


def test_server_listens_on_all_interfaces_on_the_container_port():
    args = serve_args()
    cfg = served_config()
    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    assert host in ("0.0.0.0", "::"), (
        f"the server listens on {host!r}: a pod must listen on 0.0.0.0 "
        "(server.host in the config, or --host)"
    )
    assert port == container_port(), (
        f"the server listens on port {port} but the containerPort is {container_port()}"
    )
    service = the("Service")
    targets = [resolve_port(p.get("targetPort", p["port"])) for p in service["spec"]["ports"]]
    assert targets == [port], f"the Service targets ports {targets}, the server listens on {port}"
    service_ports = [p["port"] for p in service["spec"]["ports"]]
    assert service_ports == [8000], f"the Service's ports are {service_ports}, expected [8000]"


def test_selectors_match_the_pod_labels():
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = the("Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), (
        f"the Deployment selects {selector}, its pods are labelled {labels}"
    )
    service_selector = the("Service")["spec"]["selector"]
    assert service_selector.items() <= labels.items(), (
        f"the Service selects {service_selector}, the pods are labelled {labels}"
    )


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_probes_ask_health_on_the_server_port(probe):
    spec = container().get(probe)
    assert spec is not None, f"the container has no {probe}"
    get = spec.get("httpGet")
    assert get is not None, f"{probe} is not an httpGet probe"
    assert get.get("path") == "/health", f"{probe} asks {get.get('path')!r}, not /health"
    assert resolve_port(get["port"]) == served_config().server.port, (
        f"{probe} asks port {get['port']!r}, the server listens on {served_config().server.port}"
    )


def window(probe: str) -> int:
    spec = container()[probe]
    return spec.get("failureThreshold", 3) * spec.get("periodSeconds", 10)


def prestop_seconds() -> float:
    hook = container().get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep":
        return float(command[1])
    pytest.fail(f"preStop {hook}: this test counts only a sleep against the grace period")


def test_startup_probe_leaves_time_to_compile():
    assert window("startupProbe") >= MIN_STARTUP_WINDOW_SECONDS, (
        f"the startupProbe allows {window('startupProbe')} s; a cold start compiles for "
        f"minutes: allow at least {MIN_STARTUP_WINDOW_SECONDS} s"
    )


def test_grace_period_covers_the_drain():
    grace = pod_spec().get("terminationGracePeriodSeconds", 30)
    shutdown_grace = served_config().server.shutdown_grace_seconds
    assert grace > shutdown_grace, (
        f"terminationGracePeriodSeconds ({grace}) must exceed server.shutdown_grace_seconds "
        f"({shutdown_grace})"
    )
    parts = {
        "preStop": prestop_seconds(),
        "server.shutdown_grace_seconds": shutdown_grace,
        "ABORT_SETTLE_SECONDS (server/shutdown.py)": read_constant(
            "server/shutdown.py", "ABORT_SETTLE_SECONDS"
        ),
        "timeout_graceful_shutdown (server/cli.py)": read_keyword(
            "server/cli.py", "timeout_graceful_shutdown"
        ),
        "engine teardown (allowance)": ENGINE_TEARDOWN_SECONDS,
    }
    needed = sum(parts.values())
    assert grace >= needed, (
        f"terminationGracePeriodSeconds ({grace}) is shorter than the drain: "
        + " + ".join(f"{v:g} {k}" for k, v in parts.items())
        + f" = {needed:g}"
    )
    assert window("livenessProbe") >= grace, (
        f"the livenessProbe gives up after {window('livenessProbe')} s of 503s, less than "
        f"terminationGracePeriodSeconds ({grace}): /health's 'draining' could get a stopping "
        "pod killed before its drain ends"
    )


def test_prometheus_scrapes_metrics_on_the_server_port():
    annotations = the("Deployment")["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", "prometheus.io/scrape is not 'true'"
    assert annotations.get("prometheus.io/path") == "/metrics", (
        f"prometheus.io/path is {annotations.get('prometheus.io/path')!r}, not /metrics"
    )
    assert annotations.get("prometheus.io/port") == str(served_config().server.port), (
        f"prometheus.io/port is {annotations.get('prometheus.io/port')!r}, the server listens "
        f"on {served_config().server.port}"
    )


def test_paths_lie_on_the_right_volumes():
    cfg = served_config()
    claims = {d["metadata"]["name"] for d in documents() if d["kind"] == "PersistentVolumeClaim"}
    for volume in pod_spec().get("volumes", []):
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        assert claim is None or claim in claims, (
            f"volume {volume['name']!r} uses claim {claim!r}, which {MANIFEST.name} does not define"
        )
    model_paths = [cfg.base.model, cfg.base.tokenizer] + [
        p for arm in cfg.arms for p in (arm.model, arm.adapter, arm.adapter_base)
    ]
    for path in filter(None, model_paths):
        volume = volume_named(mount_of(path)["name"])
        assert "persistentVolumeClaim" in volume, (
            f"model path {path} is on volume {volume['name']!r}, not on the models claim"
        )
    env = {e["name"]: e.get("value") for e in container().get("env", [])}
    for what, path in [
        ("engine.cache_dir", cfg.engine.cache_dir),
        ("VLLM_CACHE_ROOT (the compile cache)", env.get("VLLM_CACHE_ROOT")),
    ]:
        assert path, f"{what} is not set"
        mount = mount_of(path)
        assert not mount.get("readOnly"), f"{what} ({path}) is on a read-only mount"
        volume = volume_named(mount["name"])
        assert "persistentVolumeClaim" in volume, (
            f"{what} ({path}) is on volume {volume['name']!r}, not on a persistent claim: "
            "every restart would compile again"
        )


def test_dev_shm_is_memory_backed():
    mount = mount_of("/dev/shm")
    assert mount["mountPath"] == "/dev/shm", "nothing is mounted at /dev/shm"
    volume = volume_named(mount["name"])
    assert volume.get("emptyDir", {}).get("medium") == "Memory", (
        f"/dev/shm is volume {volume['name']!r}, not an emptyDir with medium: Memory"
    )


# --- the guide ---------------------------------------------------------------------------


FENCED_YAML = re.compile(r"^```ya?ml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def guide_configs() -> list[tuple[int, dict]]:
    """(line, mapping) for every fenced yaml block of docs/deploy.md with a `base:` key."""
    text = GUIDE.read_text()
    found = []
    for match in FENCED_YAML.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        try:
            docs = list(yaml.safe_load_all(match.group(1)))
        except yaml.YAMLError as err:
            pytest.fail(f"{GUIDE.name}:{line}: a yaml block does not parse: {err}")
        found += [(line, d) for d in docs if isinstance(d, dict) and "base" in d]
    return found


def test_guide_configs_parse():
    configs = guide_configs()
    assert configs, f"{GUIDE.name} has no yaml block with a base: key"
    for line, data in configs:
        try:
            parse_config(data, source=f"{GUIDE.name}:{line}")
        except ConfigError as err:
            pytest.fail(str(err))


def test_guide_shows_the_config_the_manifest_serves():
    served = served_config()
    matches = []
    for line, data in guide_configs():
        try:
            if parse_config(data) == served:
                matches.append(line)
        except ConfigError:
            continue  # test_guide_configs_parse names it
    assert matches, (
        f"no config block in {GUIDE.name} equals the ConfigMap's config: keep section 1's "
        "block and deploy/k8s/genarm-serve.yaml in step"
    )
