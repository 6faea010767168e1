"""The AJP 1.3 servers over real sockets: requests, kept connections, errors
and hang-ups."""

from __future__ import absolute_import

import errno
import os
import logging
import random
import socket
import threading
import time

import pytest

from flup.server import ajp, ajp_base, ajp_fork
from tests import gateway_wire as wire
from tests.support import procinfo
from tests.support.servers import ServerProcess


def echo_app(environ, start_response):
    body = environ['wsgi.input'].read()
    text = '%s|%s|%s|%s|' % (environ['REQUEST_METHOD'], environ['SCRIPT_NAME'],
                             environ['PATH_INFO'], environ['QUERY_STRING'])
    start_response('200 OK', [('Content-Type', 'text/plain'), ('X-Echo', 'yes')])
    return [text.encode('latin-1') + body]


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def failing_app(environ, start_response):
    raise RuntimeError('boom-secret')


def exchange(address, body_chunks=(), sock=None, **options):
    """Send one FORWARD_REQUEST (and the first body chunk) and read the reply."""
    own = sock is None
    if own:
        sock = wire.connect(address)
    try:
        chunks = list(body_chunks)
        data = wire.ajp_forward_request(**options)
        if chunks:
            data += wire.ajp_body(chunks.pop(0))
        sock.sendall(data)
        return wire.ajp_read_response(sock, chunks)
    finally:
        if own:
            sock.close()


def post_options(body_size, path='/'):
    return dict(method='POST', uri=path,
                headers=[('Content-Length', str(body_size)),
                         ('Content-Type', 'application/octet-stream')])


# -- Requests ------------------------------------------------------------------

def test_ajp_get_with_query_and_headers():
    with wire.RunningServer(ajp.WSGIServer, echo_app) as running:
        response = exchange(running.address, uri='/a/b', query='x=1')
    assert response.status == 200
    assert response.reason == 'OK'
    assert response.header('Content-Type') == 'text/plain'
    assert response.header('X-Echo') == 'yes'
    assert response.body == b'GET||/a/b|x=1|'
    assert response.reuse is True


def test_ajp_post_body_fetched_with_get_body_chunk():
    body = b''.join(bytes(bytearray([i % 251])) for i in range(20000))
    pieces = [body[i:i + 8186] for i in range(0, len(body), 8186)]
    with wire.RunningServer(ajp.WSGIServer, echo_app) as running:
        response = exchange(running.address, pieces, **post_options(len(body)))
    assert response.status == 200
    assert response.body == b'POST||/||' + body
    assert len(response.body_requests) == len(pieces) - 1
    assert all(0 < size <= 8186 for size in response.body_requests)


def test_ajp_chunked_body_is_requested_from_the_start():
    pieces = [b'a' * 5000, b'b' * 3, b'c' * 8000]
    with wire.RunningServer(ajp.WSGIServer, echo_app) as running:
        sock = wire.connect(running.address)
        try:
            # No body packet follows the request: the body is chunked.
            sock.sendall(wire.ajp_forward_request(
                method='POST', headers=[('Transfer-Encoding', 'chunked')]))
            response = wire.ajp_read_response(sock, pieces)
        finally:
            sock.close()
    assert response.body == b'POST||/||' + b''.join(pieces)
    assert len(response.body_requests) == len(pieces) + 1
    assert response.reuse is True


def test_ajp_kept_connection_serves_several_requests_and_cping():
    with wire.RunningServer(ajp.WSGIServer, echo_app) as running:
        sock = wire.connect(running.address)
        try:
            for index in range(5):
                sock.sendall(wire.ajp_cping())
                assert wire.ajp_read_packet(sock) == b'\x09'
                response = exchange(running.address, [b'abc'], sock=sock,
                                    **post_options(3, '/r%d' % index))
                assert response.body == ('POST||/r%d||abc' % index).encode('ascii')
                assert response.reuse is True
        finally:
            sock.close()


def test_ajp_unread_body_ends_connection_without_reuse():
    with wire.RunningServer(ajp.WSGIServer, hello_app) as running:
        sock = wire.connect(running.address)
        try:
            response = exchange(running.address, [b'x' * 100], sock=sock, **post_options(500))
            assert response.body == b'hello'
            assert response.reuse is False
            assert wire.read_until_close(sock) == b''
        finally:
            sock.close()


def test_ajp_script_name_prefix():
    with wire.RunningServer(ajp.WSGIServer, echo_app, scriptName='/app') as running:
        inside = exchange(running.address, uri='/app/x')
        outside = exchange(running.address, uri='/other')
    assert inside.body == b'GET|/app|/x||'
    assert outside.body == b'GET|/app|/other||'


def test_ajp_large_streamed_response():
    def app(environ, start_response):
        start_response('200 OK', [])
        return (b'y' * 30000 for _ in range(10))

    with wire.RunningServer(ajp.WSGIServer, app) as running:
        response = exchange(running.address)
    assert response.body == b'y' * 300000


# -- Application errors give 500 ------------------------------------------------

def test_ajp_app_error_gives_generic_500(caplog):
    caplog.set_level(logging.ERROR, logger='flup.server.ajp_base')
    with wire.RunningServer(ajp.WSGIServer, failing_app) as running:
        response = exchange(running.address)
        again = exchange(running.address)
    assert response.status == 500
    assert b'boom-secret' not in response.body
    assert b'Internal Server Error' in response.body
    assert again.status == 500
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert errors[0].exc_info is not None


def test_ajp_app_error_after_headers_resets_connection():
    def app(environ, start_response):
        start_response('200 OK', [])
        yield b'partial'
        raise RuntimeError('late failure')

    with wire.RunningServer(ajp.WSGIServer, app) as running:
        sock = wire.connect(running.address)
        try:
            sock.sendall(wire.ajp_forward_request())
            with pytest.raises((EOFError, socket.error)):
                wire.ajp_read_response(sock)
        finally:
            sock.close()


def test_ajp_debug_page_shows_traceback():
    with wire.RunningServer(ajp.WSGIServer, failing_app, debug=True) as running:
        response = exchange(running.address)
    assert response.status == 500
    assert b'boom-secret' in response.body


# -- Bad packets -------------------------------------------------------------------

@pytest.mark.parametrize('data, reply_status', [
    (b'GET / HTTP/1.1\r\n\r\n', None),
    (wire.ajp_packet(b'\x02\x63' + b'\x00' * 20), 400),
    (wire.ajp_packet(b'\x02\x02\x00\x08HTTP/1.1'), 400),
    (wire.ajp_packet(b'\x63'), None),
])
def test_ajp_bad_packet_gets_clear_error(data, reply_status, caplog):
    caplog.set_level(logging.WARNING, logger='flup.server.ajp_base')
    with wire.RunningServer(ajp.WSGIServer, hello_app, readTimeout=2) as running:
        sock = wire.connect(running.address, timeout=5.0)
        try:
            sock.sendall(data)
            if reply_status is None:
                assert wire.read_until_close(sock) == b''
            else:
                response = wire.ajp_read_response(sock)
                assert response.status == reply_status
                assert response.reuse is False
        finally:
            sock.close()
        assert exchange(running.address).body == b'hello'
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'invalid AJP' in warnings[0]


def test_ajp_stray_end_of_body_packet_is_ignored():
    with wire.RunningServer(ajp.WSGIServer, hello_app) as running:
        sock = wire.connect(running.address)
        try:
            sock.sendall(wire.ajp_forward_request() + wire.ajp_body(b''))
            assert wire.ajp_read_response(sock).body == b'hello'
            assert exchange(running.address, sock=sock).body == b'hello'
        finally:
            sock.close()


def test_ajp_partial_packet_times_out(caplog):
    caplog.set_level(logging.WARNING, logger='flup.server.ajp_base')
    with wire.RunningServer(ajp.WSGIServer, hello_app, readTimeout=1) as running:
        sock = wire.connect(running.address, timeout=5.0)
        try:
            started = time.time()
            sock.sendall(wire.ajp_forward_request()[:7])
            assert wire.read_until_close(sock) == b''
            assert time.time() - started < 4.0
        finally:
            sock.close()
    assert any('readTimeout=1' in r.getMessage() for r in caplog.records)


def test_ajp_idle_connection_closed_after_read_timeout():
    with wire.RunningServer(ajp.WSGIServer, hello_app, readTimeout=1) as running:
        sock = wire.connect(running.address, timeout=5.0)
        try:
            assert exchange(running.address, sock=sock).reuse is True
            started = time.time()
            assert wire.read_until_close(sock) == b''
            assert time.time() - started < 4.0
        finally:
            sock.close()
        assert procinfo.wait_until(lambda: running.server.stats()['connections'] == 0, 5.0)


# -- Binding, peers and defaults ---------------------------------------------------------

def test_ajp_bind_address_in_use_logs_and_returns_false(caplog):
    caplog.set_level(logging.ERROR, logger='flup.server.ajp_base')
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(('127.0.0.1', 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        for server_class in (ajp.WSGIServer, ajp_fork.WSGIServer):
            caplog.clear()
            assert server_class(hello_app, bindAddress=('127.0.0.1', port)).run() is False
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1
            assert '127.0.0.1:%d' % port in errors[0]
            assert 'EADDRINUSE' in errors[0]
    finally:
        blocker.close()


def test_ajp_defaults_and_allowed_servers():
    assert ajp_base.BaseAJPServer(hello_app)._allowedServers == frozenset(['127.0.0.1'])
    assert ajp.WSGIServer(hello_app)._allowedServers is None
    assert ajp_fork.WSGIServer(hello_app)._allowedServers is None
    assert ajp.WSGIServer(hello_app)._bindAddress == ('localhost', 8009)
    assert ajp.WSGIServer(hello_app).scriptName == ''
    with wire.RunningServer(ajp.WSGIServer, hello_app, allowedServers=['192.0.2.7']) as running:
        sock = wire.connect(running.address)
        try:
            sock.sendall(wire.ajp_forward_request())
            try:
                reply = wire.read_until_close(sock)
            except socket.error as error:
                assert error.errno == errno.ECONNRESET
                reply = b''
            assert reply == b''
        finally:
            sock.close()


def test_ajp_logging_level_sets_own_logger_without_handler():
    logger = logging.getLogger('flup.server.ajp_base')
    old_level = logger.level
    try:
        ajp_fork.WSGIServer(hello_app, loggingLevel=logging.ERROR)
        assert logger.level == logging.ERROR
        assert logger.handlers == []
    finally:
        logger.setLevel(old_level)


def test_ajp_packet_class_reads_and_writes():
    left, right = socket.socketpair()
    try:
        left.settimeout(5)
        right.settimeout(5)
        left.sendall(wire.ajp_cping())
        packet = ajp_base.Packet()
        packet.read(right)
        assert packet.data == b'\x0a'
        packet.data = b'\x09'
        packet.write(right)
        assert wire.ajp_read_packet(left) == b'\x09'
    finally:
        left.close()
        right.close()


# -- Hang-ups, in server processes -------------------------------------------------------

@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop(timeout=10.0)


def start(servers, model, app, **kw):
    server = ServerProcess(model, app, bind='tcp', kw=kw)
    servers.append(server)
    return server.start()


def reset_mid_stream(address):
    sock = wire.connect(address)
    try:
        sock.sendall(wire.ajp_forward_request(query='n=200&size=65536'))
        wire.ajp_read_packet(sock)
    finally:
        wire.reset_close(sock)


def reset_mid_body(address):
    sock = wire.connect(address)
    try:
        sock.sendall(wire.ajp_forward_request(**post_options(100)) + wire.ajp_body(b'x' * 10))
        wire.ajp_read_packet(sock)  # the GET_BODY_CHUNK for the rest
    finally:
        wire.reset_close(sock)


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['ajp-threaded', 'ajp-prefork'])
def test_ajp_hangups_leave_nothing_behind(servers, model):
    # One spare thread or child, so the pool does not grow by design.
    streamer = start(servers, model, 'stream', maxSpare=1)
    reader = start(servers, model, 'read_body', maxSpare=1)
    for server in (streamer, reader):
        exchange(server.address, query='n=1&size=10')
    baselines = [wire.settled_counts(s.pid) for s in (streamer, reader)]
    for _ in range(15):
        reset_mid_stream(streamer.address)
        reset_mid_body(reader.address)
    for server, baseline in zip((streamer, reader), baselines):
        counts = wire.wait_back_to(server.pid, baseline)
        assert counts[0] <= baseline[0], 'threads left behind: %r > %r' % (counts, baseline)
        assert counts[1] <= baseline[1], 'descriptors left behind: %r > %r' % (counts, baseline)
    assert exchange(streamer.address, query='n=3&size=10').body == b'x' * 30
    assert exchange(reader.address, [b'12345'], **post_options(5)).body == b'5\n'
    for server in (streamer, reader):
        log_text = server.log_text()
        assert 'Traceback' not in log_text, log_text[log_text.find('Traceback') - 300:][:3000]
        assert server.stop()
        assert server.exited_cleanly
        assert server.leftover_pids == []


def reset_mid_packet(address):
    sock = wire.connect(address)
    try:
        sock.sendall(wire.ajp_forward_request()[:9])
        time.sleep(0.02)
    finally:
        wire.reset_close(sock)


def reset_while_app_runs(address):
    sock = wire.connect(address)
    try:
        sock.sendall(wire.ajp_forward_request(query='t=0.2'))
        time.sleep(0.05)
    finally:
        wire.reset_close(sock)


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['ajp-threaded', 'ajp-prefork'])
def test_ajp_hangups_in_packet_and_during_app(servers, model):
    server = start(servers, model, 'sleep', maxSpare=1)
    exchange(server.address, query='t=0')
    baseline = wire.settled_counts(server.pid)
    for _ in range(8):
        reset_mid_packet(server.address)
        reset_while_app_runs(server.address)
    counts = wire.wait_back_to(server.pid, baseline)
    assert counts[0] <= baseline[0], 'threads left behind: %r > %r' % (counts, baseline)
    assert counts[1] <= baseline[1], 'descriptors left behind: %r > %r' % (counts, baseline)
    assert exchange(server.address, query='t=0').status == 200
    log_text = server.log_text()
    assert 'Traceback' not in log_text, log_text[log_text.find('Traceback') - 300:][:3000]


def test_ajp_unix_socket(servers):
    server = ServerProcess('ajp-threaded', 'echo', bind='unix')
    servers.append(server)
    server.start()
    response = exchange(server.address, uri='/u')
    assert response.status == 200
    assert b'"path": "/u"' in response.body


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['ajp-threaded', 'ajp-prefork'])
def test_ajp_sigterm_with_kept_connection_open(servers, model):
    server = start(servers, model, 'hello')
    sock = wire.connect(server.address)
    try:
        assert exchange(server.address, sock=sock).reuse is True
        started = time.time()
        assert server.stop(timeout=10.0)
        elapsed = time.time() - started
    finally:
        sock.close()
    assert server.exited_cleanly
    assert elapsed < 8.0


def test_ajp_fork_app_error_gives_500(servers):
    server = start(servers, 'ajp-prefork', 'raise')
    response = exchange(server.address)
    assert response.status == 500
    assert b'boom-secret' not in response.body
    assert server.wait_for_log('application error in the request')


def test_ajp_random_garbage_never_crashes(caplog):
    caplog.set_level(logging.DEBUG, logger='flup.server.ajp_base')
    rng = random.Random(13)
    valid = wire.ajp_forward_request(**post_options(3)) + wire.ajp_body(b'abc')
    with wire.RunningServer(ajp.WSGIServer, echo_app, readTimeout=2) as running:
        for index in range(40):
            if index % 2:
                cut = rng.randint(0, len(valid))
                data = valid[:cut] + bytes(bytearray(rng.randint(0, 255) for _ in range(30)))
            else:
                data = b'\x12\x34' + bytes(bytearray(rng.randint(0, 255)
                                                     for _ in range(rng.randint(1, 200))))
            sock = wire.connect(running.address)
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                try:
                    wire.read_until_close(sock)
                except socket.error:
                    pass  # a reset for unread input is fine
            finally:
                sock.close()
        assert exchange(running.address).body == b'GET||/||'
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_ajp_request_arriving_just_after_stop_is_served():
    server = ajp_base.BaseAJPServer(echo_app, readTimeout=5)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'Q')
    server.wakeup_fds = (read_fd,)
    server.stop_requested = True  # as in a prefork child asked to quit
    left, right = socket.socketpair()
    timer = threading.Timer(0.2, left.sendall, [wire.ajp_forward_request(uri='/late')])
    try:
        left.settimeout(5)
        timer.start()
        thread = threading.Thread(target=ajp_base.Connection(right, None, server).run)
        thread.start()
        response = wire.ajp_read_response(left)
        thread.join(10)
        # After one request, the stop request ends the kept connection.
        assert wire.read_until_close(left) == b''
    finally:
        timer.cancel()
        left.close()
        os.close(read_fd)
        os.close(write_fd)
    assert response.body == b'GET||/late||'
    assert not thread.is_alive()
