"""A CRI client playing the kubelet: the few `runtime.v1.RuntimeService` calls a pod sandbox's network needs.

gRPC (grpcio) carries the calls; the messages are encoded here from the field numbers of the CRI API
(kubernetes/cri-api, pkg/apis/runtime/v1/api.proto), so no generated code and no protobuf package are needed.
Only the fields we set or read are known: protobuf readers skip the others.

    client = CriClient("/path/containerd.sock")
    client.version()                              -> {"runtime_name": ..., "runtime_version": ..., ...}
    client.has_image("localhost/rtt-pause:1")     -> bool
    client.conditions()                           -> {"NetworkReady": (False, "cni config load failed: ..."), ...}
    sandbox = client.run_pod_sandbox(PodSandbox("web", "default", uid, cgroup_parent="/rtt-..."))
    client.sandbox_status(sandbox)                -> {"state": "SANDBOX_READY", "ip": "192.168.1.2", "info": {...}}
    client.stop_pod_sandbox(sandbox); client.remove_pod_sandbox(sandbox)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import grpc

RUNTIME, IMAGES = "/runtime.v1.RuntimeService/", "/runtime.v1.ImageService/"
VARINT, LENGTH_DELIMITED = 0, 2
SANDBOX_STATES = {0: "SANDBOX_READY", 1: "SANDBOX_NOTREADY"}  # enum PodSandboxState


# -- the protobuf wire format: varints and length-delimited fields ---------------------------------------------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: bytes | str | int) -> bytes:
    """One field: an int as a varint, a str (UTF-8) or bytes (an embedded message) length-delimited. Zero
    values are left out, as proto3 does."""
    if not value:
        return b""
    if isinstance(value, int):
        return _varint(number << 3 | VARINT) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | LENGTH_DELIMITED) + _varint(len(data)) + data


def _map(number: int, entries: dict[str, str]) -> bytes:
    """A map<string, string>: each entry a message {key = 1; value = 2}."""
    return b"".join(_field(number, _field(1, key) + _field(2, value)) for key, value in entries.items())


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def decode(data: bytes) -> dict[int, list[int | bytes]]:
    """A message's fields by number, each a list of its values (ints, or bytes to decode further)."""
    fields: dict[int, list[int | bytes]] = {}
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            value, at = _read_varint(data, at)
        elif wire_type == LENGTH_DELIMITED:
            length, at = _read_varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire_type in (1, 5):  # 64-bit and 32-bit fixed: none of ours, skipped
            size = 8 if wire_type == 1 else 4
            value, at = data[at:at + size], at + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def _text(fields: dict[int, list], number: int) -> str:
    return fields[number][0].decode() if number in fields else ""


def _decoded_map(fields: dict[int, list], number: int) -> dict[str, str]:
    entries = (decode(entry) for entry in fields.get(number, []))
    return {_text(entry, 1): _text(entry, 2) for entry in entries}


# -- the messages ----------------------------------------------------------------------------------------------
@dataclass
class PodSandbox:
    """What the kubelet puts in a PodSandboxConfig for a pod, as far as a sandbox's network needs it."""
    name: str
    namespace: str
    uid: str
    attempt: int = 0
    cgroup_parent: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def config(self) -> bytes:
        metadata = _field(1, self.name) + _field(2, self.uid) + _field(3, self.namespace) + _field(4, self.attempt)
        linux = _field(1, self.cgroup_parent)  # LinuxPodSandboxConfig.cgroup_parent
        return (_field(1, metadata) + _field(2, self.name) + _map(6, self.labels)  # metadata, hostname, labels
                + _field(8, linux))


class CriError(RuntimeError):
    """A CRI call the runtime answered with an error: `code` is the gRPC status, `details` its message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.code, self.details = code, details


class CriClient:
    def __init__(self, socket: str, timeout: float = 60.0) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.timeout = timeout

    def call(self, method: str, request: bytes, service: str = RUNTIME) -> dict[int, list]:
        rpc = self.channel.unary_unary(service + method, request_serializer=None, response_deserializer=None)
        try:
            return decode(rpc(request, timeout=self.timeout))
        except grpc.RpcError as e:
            raise CriError(method, e.code(), e.details()) from None

    def version(self) -> dict[str, str]:
        answer = self.call("Version", _field(1, "v1"))
        return {name: _text(answer, number) for number, name in
                ((1, "version"), (2, "runtime_name"), (3, "runtime_version"), (4, "runtime_api_version"))}

    def conditions(self) -> dict[str, tuple[bool, str]]:
        """Status: the runtime's conditions (RuntimeReady, NetworkReady) as {type: (status, message)}."""
        status = decode(self.call("Status", b"")[1][0])
        found = (decode(condition) for condition in status.get(1, []))
        return {_text(c, 1): (bool(c.get(2, [0])[0]), _text(c, 4)) for c in found}

    def has_image(self, reference: str) -> bool:
        """ImageStatus: whether the runtime's CRI knows the image (an empty status when it does not)."""
        return 1 in self.call("ImageStatus", _field(1, _field(1, reference)), service=IMAGES)

    def run_pod_sandbox(self, pod: PodSandbox) -> str:
        """The sandbox's ID, once the runtime made it ready: its network set up by the CNI chain."""
        return _text(self.call("RunPodSandbox", _field(1, pod.config())), 1)

    def stop_pod_sandbox(self, sandbox: str) -> None:
        self.call("StopPodSandbox", _field(1, sandbox))

    def remove_pod_sandbox(self, sandbox: str) -> None:
        self.call("RemovePodSandbox", _field(1, sandbox))

    def sandbox_status(self, sandbox: str) -> dict[str, Any]:
        """state, ip (the pod's primary address) and info (the runtime's verbose details, JSON decoded)."""
        answer = self.call("PodSandboxStatus", _field(1, sandbox) + _field(2, 1))  # verbose
        status = decode(answer[1][0])
        network = decode(status[5][0]) if 5 in status else {}
        info = {key: json.loads(value) for key, value in _decoded_map(answer, 2).items()}
        return {"state": SANDBOX_STATES[status.get(3, [0])[0]], "ip": _text(network, 1), "info": info}

    def close(self) -> None:
        self.channel.close()
