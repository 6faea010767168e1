"""The SCGI servers over real sockets: requests, limits, errors and hang-ups.

In-process tests run flup.server.scgi in a thread of the test process.
Process tests start flup.server.scgi and scgi_fork through serve.py and
count the threads and descriptors of the server's process tree.
"""

from __future__ import absolute_import

import errno
import logging
import os
import random
import socket
import stat
import threading
import time

import pytest

from flup.server import NoDefault
from flup.server import scgi, scgi_base, scgi_fork
from tests import gateway_wire as wire
from tests.support import procinfo
from tests.support.servers import ServerProcess
from tests.support.webservers import parse_cgi_response


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def echo_app(environ, start_response):
    body = environ['wsgi.input'].read()
    text = '%s|%s|%s|' % (environ['REQUEST_METHOD'], environ['SCRIPT_NAME'],
                          environ['PATH_INFO'])
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [text.encode('latin-1') + body]


def failing_app(environ, start_response):
    raise RuntimeError('boom-secret')


def request(address, method='GET', path='/', body=b'', extra=()):
    raw = wire.scgi_exchange(address, wire.cgi_params(method, path, extra=extra), body)
    return parse_cgi_response(raw)


# -- Requests ------------------------------------------------------------------

def test_scgi_get_and_post():
    with wire.RunningServer(scgi.WSGIServer, echo_app) as running:
        status, _, body = request(running.address, 'GET', '/a/b')
        assert (status, body) == (200, b'GET||/a/b|')
        status, _, body = request(running.address, 'POST', '/p', b'x' * 100000)
        assert status == 200
        assert body == b'POST||/p|' + b'x' * 100000


def test_scgi_unix_socket_replaces_stale_file_and_removes_it():
    with wire.RunningServer(scgi.WSGIServer, hello_app, bind='unix') as running:
        path = running.address
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert request(path)[2] == b'hello'
    assert not os.path.exists(path)


@pytest.mark.parametrize('script_name, sent, expected', [
    (NoDefault, [('SCRIPT_NAME', '/app'), ('PATH_INFO', '/x')], b'GET|/app|/x|'),
    ('/app', [('SCRIPT_NAME', ''), ('PATH_INFO', '/app/x/y')], b'GET|/app|/x/y|'),
    ('/app', [('SCRIPT_NAME', ''), ('PATH_INFO', '/other')], b'GET|/app|/other|'),
    (None, [('SCRIPT_NAME', '/s'), ('PATH_INFO', '/p')], b'GET|/s|/p|'),
])
def test_scgi_script_name(script_name, sent, expected):
    params = [(name, value) for name, value in wire.cgi_params('GET', '/')
              if name not in ('SCRIPT_NAME', 'PATH_INFO')] + sent
    with wire.RunningServer(scgi.WSGIServer, echo_app, scriptName=script_name) as running:
        status, _, body = parse_cgi_response(wire.scgi_exchange(running.address, params))
    assert status == 200
    assert body == expected


def test_scgi_path_info_derived_from_request_uri():
    params = [('REQUEST_METHOD', 'GET'), ('REQUEST_URI', '/blog/post%20x?q=1'),
              ('SCRIPT_NAME', '/dispatch.scgi')]
    with wire.RunningServer(scgi.WSGIServer, echo_app) as running:
        body = parse_cgi_response(wire.scgi_exchange(running.address, params))[2]
    assert body == b'GET|/dispatch.scgi|/blog/post x|'


def test_scgi_access_line(caplog):
    caplog.set_level(logging.INFO, logger='flup.access')
    with wire.RunningServer(scgi.WSGIServer, hello_app) as running:
        request(running.address, 'GET', '/logged')
    lines = [r.getMessage() for r in caplog.records if r.name == 'flup.access']
    assert len(lines) == 1
    assert lines[0].startswith('GET /logged 200 5 ')


# -- The body ends at CONTENT_LENGTH --------------------------------------------

def test_scgi_read_returns_at_content_length_while_peer_keeps_socket_open():
    with wire.RunningServer(scgi.WSGIServer, echo_app, readTimeout=30) as running:
        sock = wire.connect(running.address, timeout=5.0)
        try:
            started = time.time()
            sock.sendall(wire.scgi_request(wire.cgi_params('POST', '/'), b'abc'))
            # The socket stays open for writing: only CONTENT_LENGTH ends the body.
            head = sock.recv(65536)
            elapsed = time.time() - started
        finally:
            sock.close()
    assert head.startswith(b'Status: 200 OK')
    assert head.endswith(b'POST||/|abc')
    assert elapsed < 3.0


def test_scgi_readline_iteration_and_sized_reads():
    lines = []

    def app(environ, start_response):
        stream = environ['wsgi.input']
        lines.append(stream.read(2))
        lines.append(stream.readline())
        lines.extend(stream)
        lines.append(stream.read())
        start_response('200 OK', [])
        return [b'']

    with wire.RunningServer(scgi.WSGIServer, app) as running:
        request(running.address, 'POST', '/', b'abc\nline2\nend')
    assert lines == [b'ab', b'c\n', b'line2\n', b'end', b'']


# -- Silent connections are dropped after readTimeout ----------------------------

def test_scgi_silent_connections_dropped_after_read_timeout(caplog):
    caplog.set_level(logging.WARNING, logger='flup.server.scgi_base')
    with wire.RunningServer(scgi.WSGIServer, hello_app, readTimeout=1) as running:
        socks = [wire.connect(running.address, timeout=6.0) for _ in range(10)]
        started = time.time()
        try:
            results = [s.recv(10) for s in socks]
        finally:
            for s in socks:
                s.close()
        elapsed = time.time() - started
        assert request(running.address)[2] == b'hello'
        assert procinfo.wait_until(
            lambda: running.server.stats()['connections'] == 0, 5.0)
    assert results == [b''] * 10
    assert elapsed < 4.0
    messages = [r.getMessage() for r in caplog.records]
    assert sum('readTimeout=1' in m for m in messages) == 10


def test_scgi_stalled_body_ends_with_client_disconnected():
    seen = []

    def app(environ, start_response):
        try:
            environ['wsgi.input'].read()
        except IOError as error:
            seen.append(type(error).__name__)
            raise
        start_response('200 OK', [])
        return [b'']

    with wire.RunningServer(scgi.WSGIServer, app, readTimeout=1) as running:
        sock = wire.connect(running.address, timeout=6.0)
        try:
            sock.sendall(wire.scgi_request(wire.cgi_params('POST'), b'ab', content_length=10))
            assert sock.recv(100) == b''
        finally:
            sock.close()
    assert seen == ['ClientDisconnected']


# -- Protocol errors ---------------------------------------------------------------

@pytest.mark.parametrize('data', [
    b'garbage',
    b'5:abcde,',
    b'99999999999:',
    b'3:a\x00b!',
    b'25:SCGI\x001\x00CONTENT_LENGTH\x000\x00,',
])
def test_scgi_bad_netstring_gets_400_and_a_warning(data, caplog):
    caplog.set_level(logging.WARNING, logger='flup.server.scgi_base')
    with wire.RunningServer(scgi.WSGIServer, hello_app, readTimeout=2) as running:
        sock = wire.connect(running.address, timeout=5.0)
        try:
            sock.sendall(data)
            reply = wire.read_until_close(sock)
        finally:
            sock.close()
        assert request(running.address)[2] == b'hello'
    status = parse_cgi_response(reply)[0] if reply else None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, 'no warning logged'
    assert status in (400, None)
    if status is None:
        # Too short to be judged invalid: dropped at readTimeout instead.
        assert 'readTimeout' in warnings[0].getMessage()
    else:
        assert 'invalid SCGI request' in warnings[0].getMessage()


def test_scgi_peer_closes_inside_header(caplog):
    caplog.set_level(logging.DEBUG, logger='flup.server.scgi_base')
    with wire.RunningServer(scgi.WSGIServer, hello_app) as running:
        sock = wire.connect(running.address)
        sock.sendall(b'40:CONTENT_LENGTH\x00')
        sock.close()
        assert request(running.address)[2] == b'hello'
    assert any('inside the SCGI header' in r.getMessage() for r in caplog.records)


# -- Application errors --------------------------------------------------------------

def test_scgi_app_error_gives_generic_500_and_logs_traceback(caplog):
    caplog.set_level(logging.ERROR, logger='flup.server.scgi_base')
    with wire.RunningServer(scgi.WSGIServer, failing_app) as running:
        status, headers, body = request(running.address)
    assert status == 500
    assert b'boom-secret' not in body
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None


def test_scgi_debug_page_shows_traceback():
    with wire.RunningServer(scgi.WSGIServer, failing_app, debug=True) as running:
        status, _, body = request(running.address)
    assert status == 500
    assert b'boom-secret' in body


# -- Peers, binding and logging ---------------------------------------------------------

def test_scgi_allowed_servers_rejects_tcp_peer_but_serves_unix():
    with wire.RunningServer(scgi.WSGIServer, hello_app, allowedServers=['192.0.2.1']) as running:
        sock = wire.connect(running.address)
        try:
            sock.sendall(wire.scgi_request(wire.cgi_params()))
            try:
                reply = wire.read_until_close(sock)
            except socket.error as error:
                # Closed with the request unread, which may reset.
                assert error.errno == errno.ECONNRESET
                reply = b''
            assert reply == b''
        finally:
            sock.close()
    with wire.RunningServer(scgi.WSGIServer, hello_app, bind='unix',
                            allowedServers=['192.0.2.1']) as running:
        assert request(running.address)[2] == b'hello'


def test_scgi_allowed_servers_defaults():
    assert scgi_base.BaseSCGIServer(hello_app)._allowedServers == frozenset(['127.0.0.1'])
    assert scgi.WSGIServer(hello_app)._allowedServers is None
    assert scgi_fork.WSGIServer(hello_app)._allowedServers is None
    assert scgi.WSGIServer(hello_app)._bindAddress == ('localhost', 4000)
    assert scgi.WSGIServer(hello_app, allowedServers='127.0.0.1')._allowedServers == \
        frozenset(['127.0.0.1'])


def test_scgi_unknown_keyword_rejected():
    with pytest.raises(TypeError) as info:
        scgi.WSGIServer(hello_app, maxChildren=3)
    assert 'maxChildren' in str(info.value)
    with pytest.raises(TypeError):
        scgi_fork.WSGIServer(hello_app, maxThreads=3)


def test_scgi_bind_address_in_use_logs_and_returns_false(caplog):
    caplog.set_level(logging.ERROR, logger='flup.server.scgi_base')
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(('127.0.0.1', 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        for server_class in (scgi.WSGIServer, scgi_fork.WSGIServer):
            caplog.clear()
            result = server_class(hello_app, bindAddress=('127.0.0.1', port)).run()
            assert result is False
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1
            assert '127.0.0.1:%d' % port in errors[0]
            assert 'EADDRINUSE' in errors[0]
    finally:
        blocker.close()


def test_scgi_logging_level_sets_own_logger_without_handler():
    logger = logging.getLogger('flup.server.scgi_base')
    old_level = logger.level
    try:
        scgi.WSGIServer(hello_app, loggingLevel=logging.WARNING)
        assert logger.level == logging.WARNING
        assert logger.handlers == []
    finally:
        logger.setLevel(old_level)


def test_read_netstring_and_recvall():
    left, right = socket.socketpair()
    try:
        left.sendall(b'5:hello,3:abc')
        assert scgi_base.readNetstring(right, timeout=2) == b'hello'
        assert scgi_base.recvall(right, 2, timeout=2) == (b'3:', 2)
        left.close()
        assert scgi_base.recvall(right, 10, timeout=2) == (b'abc', 3)
        with pytest.raises(EOFError):
            scgi_base.readNetstring(right, timeout=2)
    finally:
        right.close()
    left, right = socket.socketpair()
    try:
        left.sendall(b'3:abc;')
        with pytest.raises(scgi_base.ProtocolError):
            scgi_base.readNetstring(right, timeout=2)
        with pytest.raises(socket.timeout):
            scgi_base.readNetstring(right, timeout=0.2)
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
    """Ask for a long streamed reply and reset after its first bytes."""
    sock = wire.connect(address)
    try:
        sock.sendall(wire.scgi_request(wire.cgi_params('GET', '/', 'n=200&size=65536')))
        sock.recv(1024)
    finally:
        wire.reset_close(sock)


def reset_mid_body(address):
    """Announce a 100-byte body, send 10 bytes, then reset."""
    sock = wire.connect(address)
    try:
        sock.sendall(wire.scgi_request(wire.cgi_params('POST'), b'x' * 10, content_length=100))
        time.sleep(0.05)
    finally:
        wire.reset_close(sock)


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['scgi-threaded', 'scgi-prefork'])
def test_scgi_hangups_leave_nothing_behind(servers, model):
    # One spare thread or child, so the pool does not grow by design.
    streamer = start(servers, model, 'stream', maxSpare=1)
    reader = start(servers, model, 'read_body', maxSpare=1)
    for server in (streamer, reader):
        wire.scgi_exchange(server.address, wire.cgi_params('GET', '/', 'n=1&size=10'))
    baselines = [wire.settled_counts(s.pid) for s in (streamer, reader)]
    for _ in range(15):
        reset_mid_stream(streamer.address)
        reset_mid_body(reader.address)
    for server, baseline in zip((streamer, reader), baselines):
        counts = wire.wait_back_to(server.pid, baseline)
        assert counts[0] <= baseline[0], 'threads left behind: %r > %r' % (counts, baseline)
        assert counts[1] <= baseline[1], 'descriptors left behind: %r > %r' % (counts, baseline)
    raw = wire.scgi_exchange(streamer.address, wire.cgi_params('GET', '/', 'n=3&size=10'))
    assert parse_cgi_response(raw)[2] == b'x' * 30
    raw = wire.scgi_exchange(reader.address, wire.cgi_params('POST'), b'12345')
    assert parse_cgi_response(raw)[2] == b'5\n'
    for server in (streamer, reader):
        log_text = server.log_text()
        assert 'Traceback' not in log_text, log_text[log_text.find('Traceback') - 300:][:3000]
        assert server.stop()
        assert server.exited_cleanly
        assert server.leftover_pids == []


def reset_mid_header(address):
    """Send half of a request header, then reset."""
    sock = wire.connect(address)
    try:
        sock.sendall(wire.scgi_request(wire.cgi_params())[:20])
        time.sleep(0.02)
    finally:
        wire.reset_close(sock)


def reset_while_app_runs(address):
    """Send a whole request to an application that sleeps, then reset."""
    sock = wire.connect(address)
    try:
        sock.sendall(wire.scgi_request(wire.cgi_params('GET', '/', 't=0.2')))
        time.sleep(0.05)
    finally:
        wire.reset_close(sock)


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['scgi-threaded', 'scgi-prefork'])
def test_scgi_hangups_in_header_and_during_app(servers, model):
    server = start(servers, model, 'sleep', maxSpare=1)
    wire.scgi_exchange(server.address, wire.cgi_params('GET', '/', 't=0'))
    baseline = wire.settled_counts(server.pid)
    for _ in range(8):
        reset_mid_header(server.address)
        reset_while_app_runs(server.address)
    counts = wire.wait_back_to(server.pid, baseline)
    assert counts[0] <= baseline[0], 'threads left behind: %r > %r' % (counts, baseline)
    assert counts[1] <= baseline[1], 'descriptors left behind: %r > %r' % (counts, baseline)
    raw = wire.scgi_exchange(server.address, wire.cgi_params('GET', '/', 't=0'))
    assert parse_cgi_response(raw)[0] == 200
    log_text = server.log_text()
    assert 'Traceback' not in log_text, log_text[log_text.find('Traceback') - 300:][:3000]


def test_scgi_ipv6_bind(servers):
    server = ServerProcess('scgi-threaded', 'hello', bind='tcp6')
    servers.append(server)
    server.start()
    raw = wire.scgi_exchange(server.address[:2], wire.cgi_params())
    assert parse_cgi_response(raw)[2] == b'Hello, world!\n'


@pytest.mark.hangup
@pytest.mark.parametrize('model', ['scgi-threaded', 'scgi-prefork'])
def test_scgi_sigterm_with_silent_connection_open(servers, model):
    server = start(servers, model, 'hello')
    sock = wire.connect(server.address)
    try:
        started = time.time()
        assert server.stop(timeout=10.0)
        elapsed = time.time() - started
    finally:
        sock.close()
    assert server.exited_cleanly
    assert elapsed < 8.0


@pytest.mark.parametrize('model', ['scgi-threaded', 'scgi-prefork'])
def test_scgi_process_models_answer(servers, model):
    server = start(servers, model, 'echo')
    raw = wire.scgi_exchange(server.address, wire.cgi_params('POST', '/e'), b'body')
    status, _, body = parse_cgi_response(raw)
    assert status == 200
    assert b'"body_length": 4' in body


def test_scgi_fork_timeout_ends_long_request(servers):
    server = start(servers, 'scgi-prefork', 'sleep', timeout=1)
    started = time.time()
    raw = wire.scgi_exchange(server.address, wire.cgi_params('GET', '/', 't=5'))
    assert parse_cgi_response(raw)[0] == 500
    assert time.time() - started < 4.0
    assert server.wait_for_log('ran longer than 1 seconds')


def test_scgi_errno_helper_names():
    # The in-use test above depends on errno naming the bind failure.
    assert errno.errorcode[errno.EADDRINUSE] == 'EADDRINUSE'


@pytest.mark.hangup
def test_scgi_fork_silent_connections_dropped(servers):
    server = start(servers, 'scgi-prefork', 'hello', readTimeout=1, maxChildren=4)
    socks = [wire.connect(server.address, timeout=8.0) for _ in range(3)]
    started = time.time()
    try:
        results = [s.recv(10) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert results == [b''] * 3
    assert time.time() - started < 6.0
    raw = wire.scgi_exchange(server.address, wire.cgi_params())
    assert parse_cgi_response(raw)[2] == b'Hello, world!\n'
    assert server.log_text().count('within readTimeout=1 s') >= 3


def test_scgi_fork_timeout_alarm_cancelled_after_fast_request(servers):
    server = start(servers, 'scgi-prefork', 'hello', timeout=1, maxSpare=1)
    raw = wire.scgi_exchange(server.address, wire.cgi_params())
    assert parse_cgi_response(raw)[0] == 200
    time.sleep(1.5)  # longer than timeout: a leftover alarm would have fired
    raw = wire.scgi_exchange(server.address, wire.cgi_params())
    assert parse_cgi_response(raw)[0] == 200
    log_text = server.log_text()
    assert 'SIGALRM' not in log_text
    assert 'ran longer' not in log_text


def test_scgi_random_garbage_never_crashes(caplog):
    caplog.set_level(logging.DEBUG, logger='flup.server.scgi_base')
    rng = random.Random(11)
    valid = wire.scgi_request(wire.cgi_params('POST'), b'abc')
    with wire.RunningServer(scgi.WSGIServer, echo_app, readTimeout=2) as running:
        for index in range(40):
            if index % 2:
                cut = rng.randint(0, len(valid))
                data = valid[:cut] + bytes(bytearray(rng.randint(0, 255) for _ in range(30)))
            else:
                data = bytes(bytearray(rng.randint(0, 255) for _ in range(rng.randint(1, 200))))
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
        assert request(running.address)[2] == b'GET||/|'
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def stopping_server(server_class):
    """A server that reports a stop request, as a prefork child does right
    after its parent asked it to quit; the pipe is its readable wakeup fd."""
    server = server_class(echo_app, readTimeout=5)
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'Q')
    server.wakeup_fds = (read_fd,)
    server.stop_requested = True
    return server, (read_fd, write_fd)


def test_scgi_request_arriving_just_after_stop_is_served():
    server, pipe = stopping_server(scgi_base.BaseSCGIServer)
    left, right = socket.socketpair()
    timer = threading.Timer(0.2, left.sendall,
                            [wire.scgi_request(wire.cgi_params('POST', '/late'), b'x')])
    try:
        left.settimeout(5)
        timer.start()
        scgi_base.Connection(right, None, server).run()
        reply = wire.read_until_close(left)
    finally:
        timer.cancel()
        left.close()
        for fd in pipe:
            os.close(fd)
    assert parse_cgi_response(reply)[2] == b'POST||/late|x'


def test_scgi_silent_connection_ends_soon_after_stop():
    server, pipe = stopping_server(scgi_base.BaseSCGIServer)
    left, right = socket.socketpair()
    try:
        left.settimeout(5)
        started = time.time()
        scgi_base.Connection(right, None, server).run()
        elapsed = time.time() - started
        assert wire.read_until_close(left) == b''
    finally:
        left.close()
        for fd in pipe:
            os.close(fd)
    assert elapsed < 3.0
