"""The dev stack's loopback ports: fixed ones checked up front, naming the flag that changes each.

Checking before anything starts turns "address already in use" deep in some child's log into one
line that says which part, which port and which flag; 0 asks for any free port.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from job.devstack.children import StackError
from job.devstack.gcs_emulator import free_port, port_in_use


@dataclass(frozen=True)
class Ports:
    """One loopback port per listening part; 0 picks a free one."""

    gcs: int = 4443
    comfyui: int = 8188
    function: int = 8081
    run_api: int = 8123
    service: int = 8080


PORT_FLAGS = {
    "gcs": ("--gcs-port", "the GCS emulator"),
    "comfyui": ("--comfyui-port", "ComfyUI"),
    "function": ("--function-port", "the function"),
    "run_api": ("--run-api-port", "the Cloud Run Admin API stand-in"),
    "service": ("--service-port", "the /predict service"),
}


def resolve_ports(ports: Ports, host: str) -> Ports:
    """Check every fixed port is free (naming the flag to change it) and pick free ones for 0."""
    given = {item.name: int(getattr(ports, item.name)) for item in fields(Ports)}
    fixed: dict[int, str] = {}
    for name, port in given.items():
        if not port:
            continue
        flag, what = PORT_FLAGS[name]
        if port in fixed:
            raise StackError(f"{flag} {port} is also {PORT_FLAGS[fixed[port]][0]}: give each part its own port")
        if _in_use(host, port):
            raise StackError(
                f"port {port} on {host} ({what}) is already in use: stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'` names it), or pass {flag} with another port (0 picks a free one)"
            )
        fixed[port] = name
    taken = set(fixed)
    for name, port in given.items():
        while not port or (port in taken and fixed.get(port) != name):
            port = free_port(host)
        given[name] = port
        taken.add(port)
    return Ports(**given)


def _in_use(host: str, port: int) -> bool:
    try:
        return port_in_use(host, port)
    except OSError as exc:
        raise StackError(f"cannot use {host}:{port}: {exc.strerror}") from None
