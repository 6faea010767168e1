"""Tests of upstream flup internals that a black-box server test cannot reach.

They import ``flup`` from the folder that ``FLUP_TEST_TARGET`` names
(upstream 1.0.3, with or without ``patches/flup-1.0.3``), drive one
connection over a socket pair in a helper thread, and decode what it sends
with the project's independent test client codec (``tests/fcgi_wire.py``).
``patches/verify`` runs them; they need Python 3, as flup 1.0.3 does.
"""

from __future__ import absolute_import

import os
import socket
import sys
import threading
import types

import pytest

TARGET = os.environ.get('FLUP_TEST_TARGET')
if not TARGET:
    pytest.skip('FLUP_TEST_TARGET is not set: these tests only run against '
                'an upstream flup tree', allow_module_level=True)

TARGET = os.path.realpath(TARGET)
for _name in [name for name in sys.modules if name == 'flup' or name.startswith('flup.')]:
    del sys.modules[_name]
sys.path.insert(0, TARGET)
from flup.server import fcgi_base  # noqa: E402

if not os.path.realpath(fcgi_base.__file__).startswith(TARGET + os.sep):
    raise ImportError('flup was imported from %s, not from FLUP_TEST_TARGET=%s; '
                      'remove the other flup from sys.path'
                      % (fcgi_base.__file__, TARGET))

# The repository root goes last, so that its own flup cannot shadow the target.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(REPO_ROOT)
from tests import fcgi_wire  # noqa: E402

# Seconds a connection may take to serve one request over the socket pair.
RUN_TIMEOUT = 10.0


def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello\n']


def large_body(environ, start_response):
    body = b'z' * 200000
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', str(len(body)))])
    return [body]


class AppError(Exception):
    """An application error whose constructor needs two arguments."""

    def __init__(self, code, detail):
        Exception.__init__(self, code, detail)


def error_after_body(environ, start_response):
    """Send part of the body, then report an error through start_response."""
    write = start_response('200 OK', [('Content-Type', 'text/plain')])
    write(b'partial')
    try:
        raise AppError(7, 'disk full')
    except AppError:
        start_response('500 Internal Server Error',
                       [('Content-Type', 'text/plain')], sys.exc_info())
    return [b'not sent']


def serve_one_request(connection_class, server, params):
    """Send one request without FCGI_KEEP_CONN to a connection over a socket
    pair, run the connection in a thread and return (records, error).

    ``error`` is the exception that escaped ``Connection.run``, or None.
    The client half-closes after the request, so the server's drain ends.
    """
    server_sock, client_sock = socket.socketpair()
    client_sock.settimeout(RUN_TIMEOUT)
    connection = connection_class(server_sock, None, server, None)
    errors = []

    def run():
        try:
            connection.run()
        except Exception as exc:  # Reported to the test, which asserts on it.
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.daemon = True
    thread.start()
    try:
        client_sock.sendall(fcgi_wire.begin(1)
                            + fcgi_wire.params(1, params)
                            + fcgi_wire.stdin(1, b''))
        client_sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        # Each recv returns at least one byte or ends the loop.
        for _ in range(1000000):
            try:
                chunk = client_sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            received.extend(chunk)
        thread.join(RUN_TIMEOUT)
    finally:
        client_sock.close()
    assert not thread.is_alive(), 'Connection.run still running after %.0f s' % RUN_TIMEOUT
    records, leftover = fcgi_wire.parse_records(received)
    assert leftover == b''
    return records, (errors[0] if errors else None)


def end_statuses(records):
    return [fcgi_wire.parse_end_request(rec.content)
            for rec in records if rec.type == fcgi_wire.END_REQUEST]


class FailingThread(threading.Thread):
    def start(self):
        raise RuntimeError("can't start new thread")


def fail_start_new_thread(function, args, kwargs=None):
    raise RuntimeError("can't start new thread")


@pytest.mark.hangup
def test_thread_start_failure_overloaded(monkeypatch):
    """A multiplexed request whose thread cannot start ends with FCGI_OVERLOADED."""
    monkeypatch.delenv('FLUP_MULTIPLEXED', raising=False)
    server = fcgi_base.BaseFCGIServer(hello, multiplexed=True)
    # The stand-ins replace names in fcgi_base only, so the test's own
    # threads still start.
    monkeypatch.setattr(fcgi_base, '_thread', types.SimpleNamespace(
        start_new_thread=fail_start_new_thread, error=RuntimeError,
        allocate_lock=threading.Lock))
    monkeypatch.setattr(fcgi_base, 'threading', types.SimpleNamespace(
        Thread=FailingThread, RLock=threading.RLock,
        Condition=threading.Condition))

    records, error = serve_one_request(fcgi_base.MultiplexedConnection, server,
                                       fcgi_wire.cgi_params())

    assert error is None, 'Connection.run raised %r' % (error,)
    assert end_statuses(records) == [(0, fcgi_wire.OVERLOADED)]


@pytest.mark.defaults
def test_maxwrite_above_record_limit(monkeypatch):
    """maxwrite = 100000 still gives records of at most 65535 bytes and the whole body."""
    monkeypatch.delenv('FLUP_MULTIPLEXED', raising=False)

    class LargeWriteServer(fcgi_base.BaseFCGIServer):
        maxwrite = 100000

    server = LargeWriteServer(large_body)

    records, error = serve_one_request(fcgi_base.Connection, server,
                                       fcgi_wire.cgi_params())
    response = fcgi_wire.Response(1, records)
    sizes = [len(rec.content) for rec in records if rec.type == fcgi_wire.STDOUT]

    assert error is None, 'Connection.run raised %r' % (error,)
    assert max(sizes) <= fcgi_wire.MAX_CONTENT_LENGTH
    assert response.status == 200
    assert len(response.body) == 200000
    assert response.protocol_status == fcgi_wire.REQUEST_COMPLETE


@pytest.mark.defaults
def test_start_response_reraises_original(monkeypatch):
    """start_response re-raises the application's exception after the headers."""
    monkeypatch.delenv('FLUP_MULTIPLEXED', raising=False)
    server = fcgi_base.BaseFCGIServer(error_after_body)

    records, error = serve_one_request(fcgi_base.Connection, server,
                                       fcgi_wire.cgi_params())
    response = fcgi_wire.Response(1, records)
    last_line = response.stderr.decode('utf-8', 'replace').strip().splitlines()[-1]

    assert error is None, 'Connection.run raised %r' % (error,)
    assert response.body == b'partial'
    exception_name = last_line.split(':', 1)[0]
    assert exception_name.endswith('AppError'), 'traceback ends with %r' % last_line
    assert 'TypeError' not in response.stderr.decode('utf-8', 'replace')
