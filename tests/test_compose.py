"""docker-compose.yml: the single Qdrant node by default, a three-node cluster under the `cluster` profile.

No Docker engine runs here, so the file is parsed (PyYAML) and checked against what Qdrant's
distributed mode needs. `problems()` lists every fault it finds; the real file must have none,
and each fault planted in a copy of it must be reported (so every check can fail).
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
CLUSTER = ("qdrant-node-1", "qdrant-node-2", "qdrant-node-3")
P2P = 6335

# The single node exactly as it was before the cluster profile: `docker compose up -d` must not change.
SINGLE = {
    "image": "qdrant/qdrant:v1.16.0",
    "restart": "unless-stopped",
    "ports": ["6333:6333", "6334:6334"],
    "volumes": ["qdrant_storage:/qdrant/storage"],
    "environment": {"QDRANT__SERVICE__API_KEY": "${QDRANT_API_KEY:-}"},
    "healthcheck": {
        "test": ["CMD-SHELL", "bash -c 'exec 3<>/dev/tcp/127.0.0.1/6333 && printf \"GET /readyz HTTP/1.0\\r\\n\\r\\n\" >&3 && grep -q \"200 OK\" <&3'"],
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "10s",
    },
}


def load() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _args(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _flag(args: list[str], name: str) -> str | None:
    """The value of --name in a command line (either `--name value` or `--name=value`), or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def _host_ports(service: dict) -> list[tuple[int, int]]:
    """(host, container) for each published port, short syntax "H:C" or "IP:H:C", or the long one."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((int(port["published"]), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            if len(parts) >= 2:
                out.append((int(parts[-2]), int(parts[-1])))
    return out


def _storage_volume(service: dict) -> str | None:
    for mount in service.get("volumes") or []:
        source, _, target = str(mount).partition(":")
        if target.split(":")[0] == "/qdrant/storage":
            return source
    return None


def problems(compose: dict) -> list[str]:
    """Every way the file falls short of: the single node unchanged by default, plus a correct cluster profile."""
    found = []
    services = compose.get("services") or {}
    declared_volumes = set((compose.get("volumes") or {}).keys())

    default = sorted(name for name, s in services.items() if not s.get("profiles"))
    if default != ["qdrant"]:
        found.append(f"default services: {default}, expected only the single node ['qdrant']")
    single = services.get("qdrant", {})
    for key, value in SINGLE.items():
        if single.get(key) != value:
            found.append(f"single node changed: {key} is {single.get(key)!r}")
    if "command" in single or "profiles" in single:
        found.append("single node changed: it gained a command or a profile")

    cluster = sorted(name for name, s in services.items() if "cluster" in (s.get("profiles") or []))
    if cluster != list(CLUSTER):
        found.append(f"cluster profile services: {cluster}, expected {list(CLUSTER)}")
    nodes = {name: services[name] for name in CLUSTER if name in services}

    first_uri = f"http://{CLUSTER[0]}:{P2P}"
    for name, node in nodes.items():
        env, args = _env(node), _args(node)
        if env.get("QDRANT__CLUSTER__ENABLED") != "true":
            found.append(f"{name}: cluster mode not enabled (QDRANT__CLUSTER__ENABLED)")
        if env.get("QDRANT__CLUSTER__P2P__PORT", str(P2P)) != str(P2P):
            found.append(f"{name}: p2p port {env['QDRANT__CLUSTER__P2P__PORT']}, the URIs say {P2P}")
        if _flag(args, "--uri") != f"http://{name}:{P2P}":
            found.append(f"{name}: --uri is {_flag(args, '--uri')!r}, expected its own p2p address http://{name}:{P2P}")
        bootstrap = _flag(args, "--bootstrap")
        if name == CLUSTER[0]:
            if bootstrap is not None:
                found.append(f"{name}: the first peer must not --bootstrap (it starts the cluster)")
        else:
            if bootstrap != first_uri:
                found.append(f"{name}: --bootstrap is {bootstrap!r}, expected node 1's p2p address {first_uri}")
            condition = ((node.get("depends_on") or {}).get(CLUSTER[0]) or {}) if isinstance(node.get("depends_on"), dict) else {}
            if condition.get("condition") != "service_healthy":
                found.append(f"{name}: does not wait for {CLUSTER[0]} to be healthy before bootstrapping")
        if node.get("image") != single.get("image"):
            found.append(f"{name}: image {node.get('image')!r} differs from the single node's {single.get('image')!r}")
        if node.get("healthcheck") != single.get("healthcheck"):
            found.append(f"{name}: healthcheck differs from the single node's")
        if any(container == P2P for _, container in _host_ports(node)):
            found.append(f"{name}: publishes the p2p port {P2P}, which must stay inside the cluster")

    storage = {name: _storage_volume(s) for name, s in services.items()}
    for name, volume in storage.items():
        if volume is None:
            found.append(f"{name}: no volume mounted at /qdrant/storage")
        elif volume not in declared_volumes:
            found.append(f"{name}: volume {volume!r} is not declared under the top-level volumes")
    used = [v for v in storage.values() if v is not None]
    if len(used) != len(set(used)):
        found.append(f"storage volumes are shared between services: {storage}")

    published = [host for s in services.values() for host, _ in _host_ports(s)]
    if len(published) != len(set(published)):
        found.append(f"host ports clash: {sorted(published)}")
    if nodes.get(CLUSTER[0]) is not None and 6333 not in [c for _, c in _host_ports(nodes[CLUSTER[0]])]:
        found.append(f"{CLUSTER[0]}: its REST port 6333 is not published")
    return found


def test_the_compose_file_is_right():
    assert problems(load()) == []


def test_the_cluster_is_published_on_6343():
    node = load()["services"]["qdrant-node-1"]
    assert (6343, 6333) in _host_ports(node)


def _set(path: list, value):
    def mutate(compose):
        target = compose
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list):
    def mutate(compose):
        target = compose
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


S = "services"
FAULTS = {
    "a cluster node without its profile": (_delete([S, "qdrant-node-2", "profiles"]), "default services"),
    "the single node moved into the profile": (_set([S, "qdrant", "profiles"], ["cluster"]), "default services"),
    "the single node's port changed": (_set([S, "qdrant", "ports"], ["6333:6333"]), "single node changed: ports"),
    "a fourth cluster node": (lambda c: c[S].__setitem__("qdrant-node-4", copy.deepcopy(c[S]["qdrant-node-3"])), "cluster profile services"),
    "node 3 missing": (_delete([S, "qdrant-node-3"]), "cluster profile services"),
    "cluster mode off": (_set([S, "qdrant-node-2", "environment"], {"QDRANT__CLUSTER__ENABLED": "false"}), "qdrant-node-2: cluster mode not enabled"),
    "node 1 bootstraps": (_set([S, "qdrant-node-1", "command"], "./qdrant --bootstrap http://qdrant-node-2:6335 --uri http://qdrant-node-1:6335"), "qdrant-node-1: the first peer must not --bootstrap"),
    "node 1 without --uri": (_set([S, "qdrant-node-1", "command"], ["./qdrant"]), "qdrant-node-1: --uri"),
    "node 3 bootstraps from node 2": (_set([S, "qdrant-node-3", "command"], ["./qdrant", "--bootstrap", "http://qdrant-node-2:6335", "--uri", "http://qdrant-node-3:6335"]), "qdrant-node-3: --bootstrap"),
    "node 2 bootstraps on the REST port": (_set([S, "qdrant-node-2", "command"], ["./qdrant", "--bootstrap=http://qdrant-node-1:6333", "--uri", "http://qdrant-node-2:6335"]), "qdrant-node-2: --bootstrap"),
    "node 2 claims node 3's uri": (_set([S, "qdrant-node-2", "command"], ["./qdrant", "--bootstrap", "http://qdrant-node-1:6335", "--uri", "http://qdrant-node-3:6335"]), "qdrant-node-2: --uri"),
    "node 2 does not wait for node 1": (_delete([S, "qdrant-node-2", "depends_on"]), "qdrant-node-2: does not wait"),
    "another p2p port": (_set([S, "qdrant-node-3", "environment"], {"QDRANT__CLUSTER__ENABLED": True, "QDRANT__CLUSTER__P2P__PORT": "6400"}), "qdrant-node-3: p2p port"),
    "two nodes share a volume": (_set([S, "qdrant-node-3", "volumes"], ["qdrant_node_2:/qdrant/storage"]), "shared between services"),
    "a node shares the single node's volume": (_set([S, "qdrant-node-1", "volumes"], ["qdrant_storage:/qdrant/storage"]), "shared between services"),
    "an undeclared volume": (_set([S, "qdrant-node-3", "volumes"], ["qdrant_node_9:/qdrant/storage"]), "not declared"),
    "a node without storage": (_delete([S, "qdrant-node-2", "volumes"]), "qdrant-node-2: no volume"),
    "another image version": (_set([S, "qdrant-node-2", "image"], "qdrant/qdrant:v1.15.0"), "qdrant-node-2: image"),
    "another healthcheck": (_set([S, "qdrant-node-3", "healthcheck"], {"test": ["CMD", "true"]}), "qdrant-node-3: healthcheck"),
    "node 1 on the single node's port": (_set([S, "qdrant-node-1", "ports"], ["6333:6333"]), "host ports clash"),
    "node 2 publishes node 1's port": (_set([S, "qdrant-node-2", "ports"], [{"published": 6343, "target": 6333}]), "host ports clash"),
    "the p2p port published": (_set([S, "qdrant-node-2", "ports"], ["6335:6335"]), "qdrant-node-2: publishes the p2p port"),
    "node 1's REST port unpublished": (_set([S, "qdrant-node-1", "ports"], ["6344:6334"]), "its REST port 6333 is not published"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_check_catches_its_fault(fault):
    mutate, expected = FAULTS[fault]
    compose = copy.deepcopy(load())
    mutate(compose)
    found = problems(compose)
    assert any(expected in p for p in found), f"{fault}: no problem mentions {expected!r}; found {found}"
