"""The dev stack's ports: a taken one is refused up front with the flag that changes it; one merely
in TIME_WAIT from the last run is free, as the servers themselves see it."""

from __future__ import annotations

import socket

import pytest

from job.devstack.children import StackError
from job.devstack.gcs_emulator import ensure_port_free
from job.devstack.ports import Ports, resolve_ports

ANY = Ports(gcs=0, comfyui=0, function=0, run_api=0, service=0)


@pytest.fixture
def listening():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


@pytest.mark.parametrize(
    ("part", "flag", "what"),
    [
        ("gcs", "--gcs-port", "the GCS emulator"),
        ("comfyui", "--comfyui-port", "ComfyUI"),
        ("function", "--function-port", "the function"),
        ("run_api", "--run-api-port", "the Cloud Run Admin API stand-in"),
        ("service", "--service-port", "the /predict service"),
    ],
)
def test_taken_port_names_the_part_and_the_flag(listening, part, flag, what):
    ports = Ports(**{**ANY.__dict__, part: listening})

    with pytest.raises(StackError) as caught:
        resolve_ports(ports, "127.0.0.1")

    message = str(caught.value)
    assert f"port {listening} on 127.0.0.1 ({what}) is already in use" in message
    assert f"pass {flag} with another port (0 picks a free one)" in message


def test_one_port_given_to_two_parts_is_refused():
    with pytest.raises(StackError, match="--service-port 8123 is also --run-api-port"):
        resolve_ports(Ports(gcs=0, comfyui=0, function=0, run_api=8123, service=8123), "127.0.0.1")


def test_zero_picks_distinct_free_ports_and_keeps_fixed_ones():
    fixed = _time_wait_port()
    ports = resolve_ports(Ports(gcs=fixed, comfyui=0, function=0, run_api=0, service=0), "127.0.0.1")

    values = list(ports.__dict__.values())
    assert ports.gcs == fixed
    assert 0 not in values and len(set(values)) == len(values)


def test_a_port_in_time_wait_counts_as_free():
    port = _time_wait_port()

    ensure_port_free("127.0.0.1", port, what="fake-gcs-server")  # no error
    assert resolve_ports(Ports(gcs=port, comfyui=0, function=0, run_api=0, service=0), "127.0.0.1").gcs == port


def _time_wait_port() -> int:
    """A port whose server closed a connection first, leaving it in TIME_WAIT (as a stopped stack does)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.recv(1)
        client.close()
    return port
