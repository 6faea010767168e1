"""FastCGI 1.0 over real sockets, against servers run in this process.

Each test speaks the protocol through ``tests/fcgi_wire.py`` (written apart
from the package's codec) to a threaded or single-connection server that
runs in a thread here, so applications can be written inline and log
records checked with ``caplog``.
"""

from __future__ import absolute_import

import logging
import socket
import sys
import threading
import time

import pytest

from flup.server import ClientDisconnected
from flup.server import fcgi, fcgi_single
from flup.server.fcgi_base import FCGI_AUTHORIZER, FCGI_FILTER, FCGI_RESPONDER
from flup.server._fcgi_protocol import MAX_NAME_LENGTH, MAX_PARAMS_BYTES

from . import fcgi_wire as wire
from .support.inprocess import InProcessServer
from .support.procinfo import wait_until

SERVER_CLASSES = [fcgi.WSGIServer, fcgi_single.WSGIServer]


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def echo_body_app(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


def get(path='/', **kwargs):
    return wire.cgi_params(method='GET', path=path, **kwargs)


@pytest.fixture(params=SERVER_CLASSES, ids=['threaded', 'single'])
def server_class(request):
    return request.param


# Management records.

@pytest.mark.parametrize('multiplexed', [False, True])
def test_get_values_reports_capabilities(multiplexed):
    with InProcessServer(fcgi.WSGIServer, hello_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            values = client.get_values([wire.MAX_CONNS, wire.MAX_REQS,
                                        wire.MPXS_CONNS])
    assert int(values[wire.MAX_CONNS]) > 0
    assert int(values[wire.MAX_REQS]) > 0
    assert values[wire.MPXS_CONNS] == ('1' if multiplexed else '0')


def test_get_values_single_server_says_no_multiplexing():
    with InProcessServer(fcgi_single.WSGIServer, hello_app,
                         multiplexed=True) as running:
        with wire.Client(running.address) as client:
            values = client.get_values([wire.MPXS_CONNS, wire.MAX_CONNS])
    assert values[wire.MPXS_CONNS] == '0'
    assert values[wire.MAX_CONNS] == '1'


def test_get_values_skips_unknown_names():
    with InProcessServer(fcgi.WSGIServer, hello_app) as running:
        with wire.Client(running.address) as client:
            values = client.get_values(['NO_SUCH_VARIABLE', wire.MAX_REQS])
    assert 'NO_SUCH_VARIABLE' not in values
    assert wire.MAX_REQS in values


def test_unknown_management_type_then_request(server_class):
    with InProcessServer(server_class, hello_app) as running:
        with wire.Client(running.address) as client:
            client.send(wire.record(99, 0, b'whatever'))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.UNKNOWN_TYPE)
            response = client.request(get(), keep_conn=True)
    assert wire.parse_unknown_type(records[-1].content) == 99
    assert response.body == b'hello'


# Connection reuse and request ids.

def test_keep_conn_serves_sequential_requests(server_class):
    with InProcessServer(server_class, hello_app) as running:
        with wire.Client(running.address) as client:
            bodies = [client.request(get(), request_id=i, keep_conn=True).body
                      for i in (1, 2, 1)]
            still_open = not client.closed_by_peer(timeout=0.3)
    assert bodies == [b'hello'] * 3
    assert still_open


def test_no_keep_conn_closes_after_response(server_class):
    with InProcessServer(server_class, hello_app) as running:
        with wire.Client(running.address) as client:
            response = client.request(get(), keep_conn=False)
            closed = client.closed_by_peer(timeout=5.0)
    assert response.protocol_status == wire.REQUEST_COMPLETE
    assert closed


def test_second_request_without_multiplexing_rejected():
    release = threading.Event()

    def slow_app(environ, start_response):
        # Without multiplexing the connection reads the socket only when
        # the application reads input or polls for a hang-up.
        for _ in range(100):
            if release.wait(0.05):
                break
            environ['flup.disconnected']()
        return hello_app(environ, start_response)

    with InProcessServer(fcgi.WSGIServer, slow_app) as running:
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, keep_conn=True) + wire.params(1, get())
                        + wire.stdin(1, b''))
            client.send(wire.begin(2, keep_conn=True))
            rejected = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST)
            release.set()
            first = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST)
    end = rejected[-1]
    assert end.request_id == 2
    assert wire.parse_end_request(end.content)[1] == wire.CANT_MPX_CONN
    assert first[-1].request_id == 1
    assert b'hello' in b''.join(r.content for r in first if r.type == wire.STDOUT)


def test_unknown_role_rejected(server_class):
    with InProcessServer(server_class, hello_app) as running:
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, role=wire.FILTER, keep_conn=True))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST)
            follow_up = client.request(get(), request_id=2)
    assert wire.parse_end_request(records[-1].content)[1] == wire.UNKNOWN_ROLE
    assert follow_up.body == b'hello'


def test_authorizer_role_served():
    def authorizer(environ, start_response):
        allowed = environ.get('HTTP_AUTHORIZATION') == 'secret'
        start_response('200 OK' if allowed else '403 Forbidden',
                       [('Variable-USER', 'alice')] if allowed else [])
        return [b'']

    with InProcessServer(fcgi.WSGIServer, authorizer,
                         roles=(FCGI_AUTHORIZER,)) as running:
        with wire.Client(running.address) as client:
            granted = client.request(
                get(headers={'Authorization': 'secret'}),
                role=wire.AUTHORIZER, keep_conn=True)
            denied = client.request(get(), role=wire.AUTHORIZER, request_id=2)
    assert granted.status == 200
    assert granted.header('Variable-USER') == 'alice'
    assert denied.status == 403


def test_filter_role_reads_data_stream():
    def filter_app(environ, start_response):
        stdin = environ['wsgi.input'].read()
        data = environ['flup.data'].read()
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [stdin.upper() + b'|' + data.upper()]

    with InProcessServer(fcgi.WSGIServer, filter_app,
                         roles=(FCGI_RESPONDER, FCGI_FILTER)) as running:
        with wire.Client(running.address) as client:
            response = client.request(
                get(extra={'FCGI_DATA_LENGTH': '9'}), body=b'in',
                role=wire.FILTER, data=b'file body')
    assert response.body == b'IN|FILE BODY'


# Aborts.

@pytest.mark.parametrize('multiplexed', [False, True])
def test_abort_while_stdin_arrives(multiplexed):
    seen = []

    def reader(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except ClientDisconnected as error:
            seen.append(error)
            raise
        return hello_app(environ, start_response)

    with InProcessServer(fcgi.WSGIServer, reader,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            params = wire.cgi_params(method='POST', body=b'x' * 100)
            client.send(wire.begin(1, keep_conn=True) + wire.params(1, params)
                        + wire.record(wire.STDIN, 1, b'x' * 10))
            time.sleep(0.1)
            client.send(wire.abort(1))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=5)
            # The connection stays usable for the next request.
            follow_up = client.request(get(), request_id=2)
    assert records[-1].request_id == 1
    assert follow_up.body == b'hello'
    assert len(seen) == 1
    assert isinstance(seen[0], IOError)


# Output framing.

def test_maxwrite_above_record_limit_is_capped():
    class BigWrites(fcgi.WSGIServer):
        maxwrite = 100000

    body = bytes(bytearray(range(256))) * 782  # 200,192 bytes

    def big_app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return [body]

    with InProcessServer(BigWrites, big_app) as running:
        with wire.Client(running.address) as client:
            response = client.request(get())
    sizes = [len(rec.content) for rec in response.records
             if rec.type == wire.STDOUT]
    assert max(sizes) <= 65535
    assert response.body == body
    assert response.protocol_status == wire.REQUEST_COMPLETE


def test_default_maxwrite_splits_records():
    body = b'y' * 20000

    def app(environ, start_response):
        start_response('200 OK', [])
        return [body]

    with InProcessServer(fcgi.WSGIServer, app) as running:
        with wire.Client(running.address) as client:
            response = client.request(get())
    sizes = [len(rec.content) for rec in response.records
             if rec.type == wire.STDOUT and rec.content]
    assert max(sizes) <= 8192
    assert response.body == body


def test_large_request_body_round_trip(server_class):
    body = b'0123456789abcdef' * 20000  # 320,000 bytes: many STDIN records
    with InProcessServer(server_class, echo_body_app) as running:
        with wire.Client(running.address) as client:
            response = client.request(
                wire.cgi_params(method='POST', body=body), body=body)
    assert response.body == body


# Malformed input.

def _closes_without_app(address, payload):
    with wire.Client(address) as client:
        client.send(payload)
        return client.closed_by_peer(timeout=5.0)


def test_truncated_pair_closes_connection(caplog):
    called = []

    def app(environ, start_response):
        called.append(environ)
        return hello_app(environ, start_response)

    # A value length of 100 runs past the end of the PARAMS content.
    bad_pair = b'\x04\x64NAMEshort'
    payload = (wire.begin(1) + wire.record(wire.PARAMS, 1, bad_pair)
               + wire.record(wire.PARAMS, 1) + wire.stdin(1, b''))
    caplog.set_level(logging.WARNING, logger='flup')
    with InProcessServer(fcgi.WSGIServer, app) as running:
        closed = _closes_without_app(running.address, payload)
    assert closed
    assert called == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and 'protocol error' in r.getMessage()]
    assert len(warnings) == 1
    assert '127.0.0.1' in warnings[0].getMessage()


def test_bad_version_closes_connection(caplog):
    caplog.set_level(logging.WARNING, logger='flup')
    with InProcessServer(fcgi.WSGIServer, hello_app) as running:
        closed = _closes_without_app(
            running.address, wire.record(wire.BEGIN_REQUEST, 1, b'\0' * 8,
                                         version=2))
    assert closed
    assert any('version' in r.getMessage() for r in caplog.records)


def test_params_over_limit_closes_connection(caplog):
    called = []

    def app(environ, start_response):
        called.append(1)
        return hello_app(environ, start_response)

    huge = [('HTTP_X_%d' % i, 'v' * 60000) for i in range(MAX_PARAMS_BYTES // 60000 + 2)]
    caplog.set_level(logging.WARNING, logger='flup')
    with InProcessServer(fcgi.WSGIServer, app) as running:
        closed = _closes_without_app(
            running.address, wire.begin(1) + wire.params(1, huge))
    assert closed
    assert called == []
    assert any('limit' in r.getMessage() for r in caplog.records)


def test_oversized_name_closes_connection(caplog):
    called = []

    def app(environ, start_response):
        called.append(1)
        return hello_app(environ, start_response)

    items = [('N' * (MAX_NAME_LENGTH + 1), 'v')]
    caplog.set_level(logging.WARNING, logger='flup')
    with InProcessServer(fcgi.WSGIServer, app) as running:
        closed = _closes_without_app(
            running.address, wire.begin(1) + wire.params(1, items) + wire.stdin(1, b''))
    assert closed
    assert called == []


def test_garbage_does_not_stop_server(server_class):
    with InProcessServer(server_class, hello_app) as running:
        for garbage in (b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', b'\x01' * 3,
                        b'\xff' * 64, b''):
            with wire.Client(running.address) as client:
                client.send(garbage)
                client.sock.shutdown(socket.SHUT_WR)
                assert client.closed_by_peer(timeout=5.0)
        with wire.Client(running.address) as client:
            assert client.request(get()).body == b'hello'


# Multiplexing.

def test_multiplexed_requests_interleave():
    gate = threading.Event()

    def app(environ, start_response):
        if environ['PATH_INFO'] == '/slow':
            gate.wait(5)
        start_response('200 OK', [])
        return [environ['PATH_INFO'].encode('ascii')]

    with InProcessServer(fcgi.WSGIServer, app, multiplexed=True) as running:
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, keep_conn=True) + wire.params(1, get('/slow'))
                        + wire.stdin(1, b''))
            client.send(wire.begin(2, keep_conn=True) + wire.params(2, get('/fast'))
                        + wire.stdin(2, b''))
            first = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST)
            gate.set()
            second = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST)
    assert first[-1].request_id == 2
    assert second[-1].request_id == 1


def test_pool_exhausted_answers_overloaded():
    gate = threading.Event()

    def app(environ, start_response):
        gate.wait(10)
        return hello_app(environ, start_response)

    # Two threads: one reads the connection, one runs request 1.
    with InProcessServer(fcgi.WSGIServer, app, multiplexed=True,
                         minSpare=1, maxSpare=1, maxThreads=2) as running:
        # The readiness probe's connection must release its thread first.
        assert wait_until(lambda: running.server.stats()['threads_in_use'] == 0, 5.0)
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, keep_conn=True) + wire.params(1, get())
                        + wire.stdin(1, b''))
            time.sleep(0.2)
            started = time.time()
            client.send(wire.begin(2, keep_conn=True) + wire.params(2, get())
                        + wire.stdin(2, b''))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=5)
            elapsed = time.time() - started
            gate.set()
            done = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=5)
    assert records[-1].request_id == 2
    assert wire.parse_end_request(records[-1].content)[1] == wire.OVERLOADED
    assert elapsed < 5
    assert done[-1].request_id == 1


# Keyword checks.

@pytest.mark.parametrize('module_name', ['fcgi', 'fcgi_fork', 'fcgi_single'])
def test_unknown_keyword_raises_type_error(module_name):
    module = __import__('flup.server.' + module_name, fromlist=['WSGIServer'])
    with pytest.raises(TypeError) as info:
        module.WSGIServer(hello_app, bindAddress=('127.0.0.1', 0),
                          noSuchOption=1)
    assert 'noSuchOption' in str(info.value)


@pytest.mark.parametrize('module_name', ['fcgi', 'fcgi_fork', 'fcgi_single'])
def test_defaults_match_upstream(module_name):
    module = __import__('flup.server.' + module_name, fromlist=['WSGIServer'])
    server = module.WSGIServer(hello_app, bindAddress=('127.0.0.1', 0))
    assert server.debug is False
    assert server.roles == (FCGI_RESPONDER,)
    assert server.environ == {}


def test_run_outside_main_thread_logs_once(caplog):
    caplog.set_level(logging.INFO, logger='flup')
    with InProcessServer(fcgi.WSGIServer, hello_app) as running:
        with wire.Client(running.address) as client:
            assert client.request(get()).body == b'hello'
    lines = [r for r in caplog.records if 'main thread' in r.getMessage()]
    assert len(lines) == 1
    assert running.result is False


def test_live_counts_visible_to_application():
    counts = []

    def app(environ, start_response):
        counts.append(environ['flup.stats']())
        counts.append(environ['flup.disconnected']())
        return hello_app(environ, start_response)

    with InProcessServer(fcgi.WSGIServer, app) as running:
        with wire.Client(running.address) as client:
            client.request(get())
        # The count goes up just after FCGI_END_REQUEST is sent.
        assert wait_until(lambda: running.server.stats()['requests'] == 1, 5.0)
        stats = running.server.stats()
    # The readiness probe's connection may not have ended yet.
    assert counts[0]['connections'] >= 1
    assert counts[0]['active_requests'] == 1
    assert counts[0]['threads_in_use'] >= 1
    assert counts[1] is False
    assert stats['requests'] == 1
    for key in ('aborted_requests', 'discarded_requests'):
        assert key in stats


def test_ipv6_and_unix_binding():
    for bind in ('tcp6', 'unix'):
        with InProcessServer(fcgi.WSGIServer, hello_app, bind=bind) as running:
            with wire.Client(running.address) as client:
                assert client.request(get()).body == b'hello'


def test_unix_socket_umask_applies(tmp_path):
    import os
    import stat
    path = str(tmp_path / 'umask.sock')
    server = fcgi.WSGIServer(hello_app, bindAddress=path, umask=0o077)
    sock = server._setupSocket()
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    finally:
        server._cleanupSocket(sock)
    assert mode == 0o700
    assert not os.path.exists(path)


def test_existing_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / 'stale.sock')
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    server = fcgi.WSGIServer(hello_app, bindAddress=path)
    sock = server._setupSocket()
    server._cleanupSocket(sock)


if sys.version_info[0] >= 3:
    def test_bytes_status_accepted_like_upstream():
        def app(environ, start_response):
            start_response(b'201 Created', [(b'X-Bytes', b'yes')])
            return [b'ok']

        with InProcessServer(fcgi.WSGIServer, app) as running:
            with wire.Client(running.address) as client:
                response = client.request(get())
        assert response.status == 201
        assert response.header('X-Bytes') == 'yes'
