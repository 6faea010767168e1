"""Unit tests of the thread pool and of how a FastCGI connection ends.

They run in the test process: a real ``flup.server.fcgi.WSGIServer`` is
built but not started, and each connection is driven over a loopback TCP
pair, so log lines name a real peer and ``fcgi_wire.Client.reset`` sends a
real RST.

The tests cover the pool's bounds and idle trimming, and its overload
response (FCGI_OVERLOADED, also when the system cannot start a thread).
They cover the grace-period join and the discard path when a connection
ends, shutdown with a request stuck in the application, and how each kind
of peer loss ends a connection.  The rest covers the read timeout, a stop
request that meets a fresh connection, and requests whose web server left
before the application ran.
"""

from __future__ import absolute_import

import errno
import logging
import os
import re
import socket
import threading
import time

import pytest

from flup._compat import monotonic
from flup.server import ClientDisconnected, fcgi, threadpool
from flup.server import fcgi_single
from tests import fcgi_wire

# Upper bound (seconds) on every wait of these tests.  The waits end as
# soon as the awaited event happens; the bound only stops a broken server
# from hanging the suite.
WAIT = 10.0

# A read timeout much longer than any test, so that a request that ends
# quickly was ended by the hang-up and not by the timeout.
LONG_READ_TIMEOUT = 60.0

PEER_RE = r'127\.0\.0\.1:\d+'


# ---------------------------------------------------------------------------
# Helpers

class Blocker(object):
    """A job for ThreadPool.addJob that blocks until released."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def run(self):
        self.started.set()
        self.release.wait(WAIT)
        self.finished.set()


def wait_for(predicate, timeout=WAIT):
    """Poll ``predicate`` every 10 ms until true or ``timeout``; return it."""
    deadline = monotonic() + timeout
    value = predicate()
    while not value and monotonic() < deadline:
        time.sleep(0.01)
        value = predicate()
    return value


def start_thread(target):
    thread = threading.Thread(target=target)
    thread.daemon = True
    thread.start()
    return thread


class Served(object):
    """One connection of ``server`` over loopback TCP, run in a thread.

    ``client`` is the web server's end (an ``fcgi_wire.Client``), ``conn``
    the flup connection and ``peer`` its peer as flup logs it.
    """

    def __init__(self, server):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(('127.0.0.1', 0))
            listener.listen(1)
            self.client = fcgi_wire.Client(listener.getsockname(), timeout=WAIT)
            sock, addr = listener.accept()
        finally:
            listener.close()
        self.peer = '%s:%d' % addr[:2]
        self.conn = server._connectionClass(sock, addr, server, None)
        self.finished = threading.Event()
        self.thread = start_thread(self._run)

    def _run(self):
        try:
            self.conn.run()
        finally:
            self.finished.set()

    def send_request(self, request_id=1, query='', body=None, announced=None,
                     keep_conn=True):
        """Send BEGIN and PARAMS, and STDIN unless ``body`` is None.

        ``announced`` sets CONTENT_LENGTH independently of the bytes sent;
        when given, ``body`` is sent without the end-of-stream record.
        """
        extra = {}
        if announced is not None:
            extra['CONTENT_LENGTH'] = str(announced)
        params = fcgi_wire.cgi_params(
            method='POST' if announced else 'GET', query=query, extra=extra)
        data = fcgi_wire.begin(request_id, keep_conn=keep_conn)
        data += fcgi_wire.params(request_id, params)
        if announced is not None:
            data += fcgi_wire.record(fcgi_wire.STDIN, request_id, body or b'')
        elif body is not None:
            data += fcgi_wire.stdin(request_id, body)
        self.client.send(data)

    def end_of(self, request_id, timeout=WAIT):
        """Receive until END_REQUEST for ``request_id``; return its Response."""
        records = self.client.recv_records(
            until=lambda rec: (rec.type == fcgi_wire.END_REQUEST
                               and rec.request_id == request_id),
            timeout=timeout)
        return fcgi_wire.Response(request_id, records)


@pytest.fixture
def make_server():
    """Build threaded WSGIServers and shut their pools down afterwards."""
    servers = []

    def make(app, multiplexed=True, **kw):
        kw.setdefault('readTimeout', LONG_READ_TIMEOUT)
        server = fcgi.WSGIServer(app, multiplexed=multiplexed,
                                 bindAddress=('127.0.0.1', 0), **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server._threadPool.shutdown(timeout=1.0)


@pytest.fixture
def flup_log(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


def messages(caplog, level=None):
    return [record.getMessage() for record in caplog.records
            if record.name.startswith('flup')
            and (level is None or record.levelno == level)]


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def blocking_app(gate, entered=None):
    """Return an app that waits for ``gate`` (up to WAIT), then returns 200."""
    def app(environ, start_response):
        if entered is not None:
            entered.set()
        gate.wait(WAIT)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'done']
    return app


# ---------------------------------------------------------------------------
# ThreadPool

def test_threadpool_no_queue_full_returns_false():
    pool = threadpool.ThreadPool(minSpare=1, maxSpare=1, maxThreads=2)
    jobs = [Blocker(), Blocker()]
    try:
        for job in jobs:
            assert pool.addJob(job, allowQueuing=False)
            assert job.started.wait(WAIT)
        extra = Blocker()

        assert pool.addJob(extra, allowQueuing=False) is False
        assert pool.thread_count == 2
        assert not extra.started.is_set()
    finally:
        for job in jobs:
            job.release.set()
        pool.shutdown(timeout=WAIT)


def test_threadpool_queued_job_runs_later():
    pool = threadpool.ThreadPool(minSpare=1, maxSpare=1, maxThreads=1)
    first, second = Blocker(), Blocker()
    try:
        assert pool.addJob(first)
        assert first.started.wait(WAIT)
        assert pool.addJob(second, allowQueuing=True)
        assert not second.started.wait(0.1)

        first.release.set()
        second.release.set()

        assert second.finished.wait(WAIT)
        assert pool.thread_count == 1
    finally:
        first.release.set()
        second.release.set()
        pool.shutdown(timeout=WAIT)


def test_threadpool_idle_trimmed_to_max_spare():
    pool = threadpool.ThreadPool(minSpare=1, maxSpare=2, maxThreads=20)
    jobs = [Blocker() for _ in range(10)]
    try:
        for job in jobs:
            assert pool.addJob(job, allowQueuing=False)
        for job in jobs:
            assert job.started.wait(WAIT)
        assert pool.thread_count == 10
        for job in jobs:
            job.release.set()

        assert wait_for(lambda: pool.thread_count <= 2), \
            '%d threads left, maxSpare is 2' % pool.thread_count
        assert pool.busy_count == 0
    finally:
        pool.shutdown(timeout=WAIT)


def test_threadpool_thread_start_failure(monkeypatch, flup_log):
    pool = threadpool.ThreadPool(minSpare=0, maxSpare=1, maxThreads=4)
    monkeypatch.setattr(threadpool, 'threading', _NoThreads())
    try:
        assert pool.addJob(Blocker(), allowQueuing=False) is False
        assert pool.thread_count == 0
    finally:
        pool.shutdown(timeout=WAIT)
    warnings = messages(flup_log, logging.WARNING)
    assert any('cannot start another worker thread' in text for text in warnings), warnings


def test_threadpool_shutdown_with_stuck_job():
    pool = threadpool.ThreadPool(minSpare=1, maxSpare=1, maxThreads=2)
    job = Blocker()
    try:
        assert pool.addJob(job)
        assert job.started.wait(WAIT)

        assert pool.shutdown(timeout=0.2) is False
        assert pool.addJob(Blocker(), allowQueuing=False) is False
        job.release.set()

        assert pool.shutdown(timeout=WAIT) is True
        assert pool.thread_count == 0
    finally:
        job.release.set()


def test_threadpool_rejects_invalid_max_threads():
    with pytest.raises(ValueError):
        threadpool.ThreadPool(maxThreads=0)


class _NoThreads(object):
    """Stands in for the threading module where no thread can start."""

    class Thread(threading.Thread):
        def start(self):
            raise RuntimeError("can't start new thread")

    def __getattr__(self, name):
        return getattr(threading, name)


# ---------------------------------------------------------------------------
# Overload: FCGI_OVERLOADED at once

def test_overloaded_when_pool_exhausted(make_server, flup_log):
    gate, entered = threading.Event(), threading.Event()
    server = make_server(blocking_app(gate, entered),
                         minSpare=1, maxSpare=1, maxThreads=1)
    served = Served(server)
    try:
        served.send_request(1, body=b'')
        assert entered.wait(WAIT)
        served.send_request(2, body=b'')

        rejected = served.end_of(2)
        assert rejected.protocol_status == fcgi_wire.OVERLOADED
        assert not gate.is_set()

        gate.set()
        assert served.end_of(1).status == 200
        served.send_request(3, body=b'')
        assert served.end_of(3).status == 200
    finally:
        gate.set()
        served.client.close()
    assert served.finished.wait(WAIT)
    warnings = messages(flup_log, logging.WARNING)
    assert any(re.search(r'request 2 from %s rejected: no worker thread free'
                         % PEER_RE, text) for text in warnings), warnings


def test_overloaded_when_thread_start_fails(make_server, monkeypatch, flup_log):
    server = make_server(hello_app, minSpare=0, maxSpare=1)
    monkeypatch.setattr(threadpool, 'threading', _NoThreads())
    served = Served(server)
    try:
        served.send_request(1, body=b'')
        response = served.end_of(1)
    finally:
        served.client.close()

    assert response.protocol_status == fcgi_wire.OVERLOADED
    assert served.finished.wait(WAIT)
    errors = [record for record in flup_log.records
              if record.levelno >= logging.ERROR]
    assert errors == []


# ---------------------------------------------------------------------------
# A connection ends: join for the grace period, then discard

def test_grace_joins_short_request(make_server, flup_log):
    finished_at = []

    def app(environ, start_response):
        time.sleep(0.3)
        finished_at.append(monotonic())
        start_response('200 OK', [])
        return [b'late']

    server = make_server(app, gracePeriod=WAIT)
    served = Served(server)
    served.send_request(1, body=b'')
    assert wait_for(lambda: server.stats()['active_requests'] == 1)
    served.client.reset()

    assert served.finished.wait(WAIT)
    assert finished_at, 'the connection ended before its request thread'
    stats = server.stats()
    assert stats['discarded_requests'] == 0
    assert stats['aborted_requests'] == 1
    assert stats['connections'] == 0
    assert not any('discarding' in text for text in messages(flup_log))


def test_grace_discards_stuck_request(make_server, flup_log):
    gate, entered = threading.Event(), threading.Event()
    server = make_server(blocking_app(gate, entered), gracePeriod=0.3)
    served = Served(server)
    try:
        served.send_request(7, body=b'')
        assert entered.wait(WAIT)
        served.client.reset()

        assert served.finished.wait(WAIT)
        assert not gate.is_set()
        assert server.stats()['discarded_requests'] == 1
        assert server.stats()['connections'] == 0
    finally:
        gate.set()
    # The discarded thread returns later; its output goes nowhere quietly.
    assert wait_for(lambda: server.stats()['active_requests'] == 0)
    warnings = [text for text in messages(flup_log, logging.WARNING)
                if 'discarding' in text]
    assert len(warnings) == 1, warnings
    assert re.search(r'discarding 1 request thread\(s\) of %s .*request ids 7'
                     % PEER_RE, warnings[0]), warnings[0]
    assert not [record for record in flup_log.records
                if record.levelno >= logging.ERROR]


def test_shutdown_with_stuck_request(tmp_path, flup_log):
    """run() returns after the grace period though an app never returns."""
    gate, entered = threading.Event(), threading.Event()
    path = str(tmp_path / 'fcgi.sock')
    server = fcgi.WSGIServer(blocking_app(gate, entered), multiplexed=True,
                             bindAddress=path, gracePeriod=0.3)
    result = []
    runner = start_thread(lambda: result.append(server.run()))
    client = None
    try:
        assert wait_for(lambda: _connectable(path))
        client = fcgi_wire.Client(path, timeout=WAIT)
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.params(1, fcgi_wire.cgi_params())
                    + fcgi_wire.stdin(1, b''))
        assert entered.wait(WAIT)

        server.shutdown()
        runner.join(WAIT)

        assert not runner.is_alive(), 'run() still running after shutdown()'
        assert result == [False]
        assert not gate.is_set()
        assert client.closed_by_peer(timeout=WAIT)
    finally:
        gate.set()
        if client is not None:
            client.close()
    assert any('still busy' in text
               for text in messages(flup_log, logging.WARNING))


@pytest.mark.xfail(strict=True, reason=(
    'fcgi_single runs the application in the thread of run(), so run() '
    'cannot return before the application does'))
def test_single_shutdown_with_stuck_request(tmp_path):
    gate, entered = threading.Event(), threading.Event()
    path = str(tmp_path / 'fcgi.sock')
    server = fcgi_single.WSGIServer(blocking_app(gate, entered),
                                    bindAddress=path, gracePeriod=0.3)
    result = []
    runner = start_thread(lambda: result.append(server.run()))
    client = None
    try:
        assert wait_for(lambda: _connectable(path))
        client = fcgi_wire.Client(path, timeout=WAIT)
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.params(1, fcgi_wire.cgi_params())
                    + fcgi_wire.stdin(1, b''))
        assert entered.wait(WAIT)

        server.shutdown()
        runner.join(3.0)

        assert not runner.is_alive(), 'run() still running 3 s after shutdown()'
    finally:
        gate.set()
        runner.join(WAIT)
        if client is not None:
            client.close()


def _connectable(path):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except (socket.error, OSError):
        return False
    finally:
        probe.close()


# ---------------------------------------------------------------------------
# The application learns of the hang-up

def read_input_app(outcome, entered):
    """Return an app that reads wsgi.input to CONTENT_LENGTH and records how
    the read ended in ``outcome``."""
    def app(environ, start_response):
        entered.set()
        stream = environ['wsgi.input']
        length = int(environ['CONTENT_LENGTH'])
        try:
            data = stream.read(length)
            outcome.append(('data', data))
        except ClientDisconnected as error:
            outcome.append(('disconnected', error))
        outcome.append(('flup.disconnected', environ['flup.disconnected']()))
        start_response('200 OK', [])
        return [b'never seen']
    return app


@pytest.mark.parametrize('multiplexed', [False, True])
def test_blocked_reader_gets_client_disconnected(make_server, flup_log,
                                                 multiplexed):
    outcome, entered = [], threading.Event()
    server = make_server(read_input_app(outcome, entered),
                         multiplexed=multiplexed)
    served = Served(server)
    served.send_request(3, body=b'x' * 10, announced=100)
    assert entered.wait(WAIT)
    time.sleep(0.05)  # Let the application block in read().
    served.client.reset()

    assert served.finished.wait(WAIT)
    assert [kind for kind, _ in outcome] == ['disconnected', 'flup.disconnected']
    error = outcome[0][1]
    assert isinstance(error, IOError)
    assert outcome[1][1] is True
    stats = server.stats()
    assert stats['aborted_requests'] == 1
    assert stats['active_requests'] == 0
    lines = [text for text in messages(flup_log)
             if re.search(r'request 3 from %s aborted' % PEER_RE, text)]
    assert len(lines) == 1, messages(flup_log)
    assert not [record for record in flup_log.records
                if record.levelno >= logging.WARNING or record.exc_info]


@pytest.mark.parametrize('multiplexed', [False, True])
def test_body_cut_short_is_not_short_read(make_server, multiplexed):
    """STDIN ending before CONTENT_LENGTH raises instead of a short body."""
    outcome, entered = [], threading.Event()
    server = make_server(read_input_app(outcome, entered),
                         multiplexed=multiplexed)
    served = Served(server)
    try:
        served.send_request(1, body=b'x' * 10, announced=100)
        served.client.send(fcgi_wire.record(fcgi_wire.STDIN, 1, b''))
        served.end_of(1)
    finally:
        served.client.close()

    assert served.finished.wait(WAIT)
    assert outcome[0][0] == 'disconnected', outcome


@pytest.mark.parametrize('multiplexed', [False, True])
def test_disconnected_callable_sees_close(make_server, multiplexed):
    seen, entered, closed = [], threading.Event(), threading.Event()

    def app(environ, start_response):
        poll = environ['flup.disconnected']
        seen.append(poll())
        entered.set()
        closed.wait(WAIT)
        seen.append(wait_for(poll, timeout=WAIT))
        start_response('200 OK', [])
        return [b'dropped']

    server = make_server(app, multiplexed=multiplexed)
    served = Served(server)
    served.send_request(1, body=b'')
    assert entered.wait(WAIT)
    served.client.close()
    closed.set()

    assert served.finished.wait(WAIT)
    assert seen == [False, True]


@pytest.mark.parametrize('multiplexed', [False, True])
def test_output_after_hangup_dropped(make_server, flup_log, multiplexed):
    written = []

    def app(environ, start_response):
        write = start_response('200 OK', [])
        for _ in range(200):
            write(b'y' * 65536)
            written.append(1)
            if environ['flup.disconnected']():
                break
        return [b'tail']

    server = make_server(app, multiplexed=multiplexed)
    served = Served(server)
    served.send_request(5, body=b'')
    served.client.recv_records(until=lambda rec: rec.type == fcgi_wire.STDOUT)
    served.client.reset()

    assert served.finished.wait(WAIT)
    assert len(written) < 200, 'the application never learnt of the hang-up'
    assert server.stats()['aborted_requests'] == 1
    lines = [text for text in messages(flup_log)
             if re.search(r'request 5 from %s aborted' % PEER_RE, text)]
    assert len(lines) == 1, messages(flup_log)
    assert not [record for record in flup_log.records
                if record.levelno >= logging.WARNING or record.exc_info]


# ---------------------------------------------------------------------------
# Every kind of peer loss ends the connection once

class FailingSocket(object):
    """A real socket whose recv or sendall raises OSError(code) on cue."""

    def __init__(self, sock, code, on):
        self._sock = sock
        self._code = code
        self._on = on
        self.armed = threading.Event()
        self.closed = 0

    def _maybe_fail(self, call):
        if call == self._on and self.armed.is_set():
            raise socket.error(self._code, 'injected %s' % errno.errorcode[self._code])

    def recv(self, *args):
        self._maybe_fail('recv')
        return self._sock.recv(*args)

    def sendall(self, data):
        self._maybe_fail('send')
        return self._sock.sendall(data)

    def close(self):
        self.closed += 1
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


PEER_LOSS_CODES = ['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'EBADF']


@pytest.mark.parametrize('on', ['recv', 'send'])
@pytest.mark.parametrize('code_name', PEER_LOSS_CODES)
@pytest.mark.parametrize('multiplexed', [False, True])
def test_peer_loss_errno_ends_connection(make_server, flup_log, multiplexed,
                                         code_name, on):
    code = getattr(errno, code_name)
    gate, entered = threading.Event(), threading.Event()

    def app(environ, start_response):
        entered.set()
        gate.wait(WAIT)
        write = start_response('200 OK', [])
        write(b'z' * 100)
        return [b'']

    server = make_server(app, multiplexed=multiplexed)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        client = fcgi_wire.Client(listener.getsockname(), timeout=WAIT)
        sock, addr = listener.accept()
    finally:
        listener.close()
    failing = FailingSocket(sock, code, on)
    conn = server._connectionClass(failing, addr, server, None)
    finished = threading.Event()
    start_thread(lambda: (conn.run(), finished.set()))
    try:
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.params(1, fcgi_wire.cgi_params())
                    + fcgi_wire.stdin(1, b''))
        assert entered.wait(WAIT)
        failing.armed.set()
        if on == 'recv':
            # Something to read, so the reader calls recv().
            client.send(fcgi_wire.get_values([fcgi_wire.MAX_CONNS]))
        gate.set()

        assert finished.wait(WAIT), 'connection still running after %s' % code_name
    finally:
        gate.set()
        client.close()
    assert failing.closed == 1
    assert server.stats()['connections'] == 0
    assert server.stats()['active_requests'] == 0
    ended = [text for text in messages(flup_log, logging.DEBUG)
             if text.startswith('connection from 127.0.0.1:')
             and ' ended: ' in text]
    assert len(ended) == 1, messages(flup_log)
    # Python 3.10 and later raise ETIMEDOUT as socket.timeout, which flup
    # describes as 'timed out'.
    assert code_name in ended[0] or (
        code_name == 'ETIMEDOUT' and ended[0].endswith('timed out')), ended[0]
    assert not [record for record in flup_log.records
                if record.levelno >= logging.ERROR or record.exc_info]


def test_abort_ends_connection_from_another_thread(make_server):
    """Connection.abort() wakes a reader blocked on an idle connection."""
    server = make_server(hello_app, multiplexed=False)
    served = Served(server)
    try:
        served.send_request(1, body=b'')
        assert served.end_of(1).status == 200
        assert not served.finished.wait(0.1)

        served.conn.abort()

        assert served.finished.wait(WAIT)
        assert served.client.closed_by_peer(timeout=WAIT)
    finally:
        served.client.close()


# ---------------------------------------------------------------------------
# Read timeout: stalled peers are closed, idle kept-alive ones are not

STALLS = {
    'nothing sent': b'',
    'mid-record': fcgi_wire.begin(1, keep_conn=True)[:5],
    'mid-params': (fcgi_wire.begin(1, keep_conn=True)
                   + fcgi_wire.record(fcgi_wire.PARAMS, 1,
                                      fcgi_wire.pairs({'A': 'b'}))),
}


@pytest.mark.parametrize('stall', sorted(STALLS))
@pytest.mark.parametrize('multiplexed', [False, True])
def test_stalled_peer_closed_after_read_timeout(make_server, flup_log,
                                                multiplexed, stall):
    server = make_server(hello_app, multiplexed=multiplexed, readTimeout=0.3)
    served = Served(server)
    try:
        if STALLS[stall]:
            served.client.send(STALLS[stall])

        assert served.client.closed_by_peer(timeout=WAIT)
        assert served.finished.wait(WAIT)
    finally:
        served.client.close()
    # A stall inside the request head is reported as an incomplete head.
    assert any(served.peer in text and 'readTimeout' in text
               for text in messages(flup_log, logging.WARNING))


@pytest.mark.parametrize('multiplexed', [False, True])
def test_stalled_stdin_aborts_request(make_server, multiplexed):
    outcome, entered = [], threading.Event()
    server = make_server(read_input_app(outcome, entered),
                         multiplexed=multiplexed, readTimeout=0.3)
    served = Served(server)
    try:
        served.send_request(1, body=b'x' * 10, announced=100)

        assert served.client.closed_by_peer(timeout=WAIT)
        assert served.finished.wait(WAIT)
    finally:
        served.client.close()
    assert outcome and outcome[0][0] == 'disconnected', outcome
    assert server.stats()['aborted_requests'] == 1


@pytest.mark.parametrize('multiplexed', [False, True])
def test_idle_kept_connection_outlives_timeout(make_server, multiplexed):
    server = make_server(hello_app, multiplexed=multiplexed, readTimeout=0.2)
    served = Served(server)
    try:
        served.send_request(1, body=b'')
        assert served.end_of(1).status == 200

        assert not served.client.closed_by_peer(timeout=0.6)
        served.send_request(2, body=b'')
        assert served.end_of(2).status == 200
    finally:
        served.client.close()
    assert served.finished.wait(WAIT)


@pytest.mark.parametrize('multiplexed', [False, True])
def test_stop_serves_first_request(make_server, multiplexed):
    """A connection accepted just before a stop request still gets served.

    A prefork child asked to quit while it accepts is in this state: the
    web server has sent, or is about to send, its request.
    """
    server = make_server(hello_app, multiplexed=multiplexed)
    server.shutdown()
    served = Served(server)
    try:
        time.sleep(0.2)
        served.send_request(1, body=b'')
        response = served.end_of(1)

        assert response.protocol_status == fcgi_wire.REQUEST_COMPLETE
        assert response.body == b'hello'
        assert served.client.closed_by_peer(timeout=WAIT)
    finally:
        served.client.close()
    assert served.finished.wait(WAIT)


def open_fd_count():
    return len(os.listdir('/proc/self/fd'))


def test_rejected_connection_holds_no_fds(make_server):
    """A multiplexed connection that the server builds and never runs, as
    when the pool has no thread for it, leaves no descriptor open."""
    server = make_server(hello_app, multiplexed=True)
    socks = [socket.socketpair() for _ in range(10)]
    try:
        before = open_fd_count()
        for sock, _ in socks:
            server._connectionClass(sock, '', server, None)

        assert open_fd_count() == before
    finally:
        for pair in socks:
            for sock in pair:
                sock.close()


def test_pool_full_storm_no_fd_leak(tmp_path):
    """Connections rejected because every thread is busy leak nothing."""
    gate = threading.Event()
    path = str(tmp_path / 'fcgi.sock')
    server = fcgi.WSGIServer(blocking_app(gate), multiplexed=True,
                             bindAddress=path, maxThreads=4, gracePeriod=0.5)
    runner = start_thread(server.run)
    clients = []
    try:
        assert wait_for(lambda: _connectable(path))
        before = open_fd_count()
        for _ in range(20):
            client = fcgi_wire.Client(path, timeout=WAIT)
            clients.append(client)
            try:
                client.send(fcgi_wire.begin(1, keep_conn=True)
                            + fcgi_wire.params(1, fcgi_wire.cgi_params())
                            + fcgi_wire.stdin(1, b''))
            except socket.error:
                pass  # The server closed a rejected connection first.
        for client in clients:
            client.closed_by_peer(timeout=0.2)
        gate.set()
        for client in clients:
            client.close()

        assert wait_for(lambda: server.stats()['connections'] == 0)
        assert wait_for(lambda: open_fd_count() <= before), \
            '%d descriptors open, %d before' % (open_fd_count(), before)
    finally:
        gate.set()
        for client in clients:
            client.close()
        server.shutdown()
        runner.join(WAIT)


def test_app_skipped_when_peer_left(make_server, flup_log):
    """A request whose web server left while it waited in the listen
    backlog is aborted without running the application.

    Only the connection that runs one request at a time is checked: a
    multiplexed one hands the request to a pool thread while its reader
    may not have seen the end of file yet.
    """
    calls = []

    def app(environ, start_response):
        calls.append(1)
        start_response('200 OK', [])
        return [b'nobody reads this']

    server = make_server(app, multiplexed=False)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        client = fcgi_wire.Client(listener.getsockname(), timeout=WAIT)
        client.send(fcgi_wire.begin(1)
                    + fcgi_wire.params(1, fcgi_wire.cgi_params())
                    + fcgi_wire.stdin(1, b''))
        client.close()
        sock, addr = listener.accept()
    finally:
        listener.close()
    conn = server._connectionClass(sock, addr, server, None)
    finished = threading.Event()
    start_thread(lambda: (conn.run(), finished.set()))

    assert finished.wait(WAIT)
    assert wait_for(lambda: server.stats()['active_requests'] == 0)
    assert calls == []
    assert server.stats()['aborted_requests'] == 1
    assert any(re.search(r'request 1 from %s aborted' % PEER_RE, text)
               for text in messages(flup_log))


def test_close_after_end_not_aborted(make_server, flup_log):
    """A web server that closes right after FCGI_END_REQUEST aborted
    nothing: the multiplexed reader may see the close before the request
    is forgotten."""
    server = make_server(hello_app, multiplexed=True)
    for _ in range(20):
        served = Served(server)
        served.send_request(1, body=b'', keep_conn=False)
        assert served.end_of(1).body == b'hello'
        served.client.close()
        assert served.finished.wait(WAIT)

    assert wait_for(lambda: server.stats()['requests'] == 20)
    assert server.stats()['aborted_requests'] == 0
    assert not [text for text in messages(flup_log) if ' aborted' in text]


def test_threadpool_trims_jobless_idle_threads():
    """Idle threads beyond maxSpare end even if they never ran a job, as
    when a thread started for a job finds that an older thread took it."""
    pool = threadpool.ThreadPool(minSpare=0, maxSpare=1, maxThreads=10)
    try:
        with pool._lock:
            for _ in range(6):
                assert pool._start_thread()
        assert pool.thread_count == 6

        assert wait_for(lambda: pool.thread_count <= 1), \
            '%d idle threads, maxSpare is 1' % pool.thread_count
    finally:
        pool.shutdown(timeout=WAIT)
