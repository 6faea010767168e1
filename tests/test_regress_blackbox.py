"""Black-box regression tests for upstream flup faults, through serve.py.

The servers are started by ``tests/support/serve.py`` with flup's public
API only, so the same tests run against this project (the default),
upstream flup or upstream with ``patches/`` applied: set
``FLUP_TEST_TARGET`` to the folder that contains the ``flup`` package.
``patches/verify`` runs them against upstream 1.0.3 with and without the
patch series.

``hangup`` tests reset connections and count the server's threads and file
descriptors.  ``defaults`` tests check FastCGI replies and process-model
behaviour that upstream gets wrong by default.  Every loop is bounded, and
all clients connect to loopback only.
"""

from __future__ import absolute_import

import signal
import socket
import time

import pytest

from tests import fcgi_wire
from tests.support import procinfo
from tests.support.servers import ServerProcess, ServerStartError

# Seconds within which threads and fds must be back after hang-ups.  The
# patched upstream drains a closed connection for up to 2 s and waits up
# to 5 s for its outstanding requests, so the bound leaves room for both.
SETTLE_TIMEOUT = 8.0

# Seconds within which a server must close its side of a connection that
# the web server keeps open after a request without FCGI_KEEP_CONN.
DRAIN_BOUND = 10.0

# Seconds within which run() must return after SIGTERM.
SIGTERM_BOUND = 10.0

# Seconds the fixture waits after SIGTERM before it kills a server.  Only
# the SIGTERM tests check how a server stops, so this bound stays short.
CLEANUP_STOP_TIMEOUT = 3.0

RESET_COUNT = 20

# Thread pool keywords for the tests that count threads: with one spare
# idle thread, a pool that served a burst shrinks back to its size at start.
ONE_SPARE = {'minSpare': 1, 'maxSpare': 1}


# ---------------------------------------------------------------------------
# Helpers

def start_server(model, app, multiplexed=False, kw=None, env=None):
    """Start serve.py and return the running ServerProcess."""
    server = ServerProcess(model, app, bind='tcp', multiplexed=multiplexed,
                           kw=kw, env=env)
    return server.start()


@pytest.fixture
def servers():
    """Collect the servers a test starts and stop them afterwards."""
    started = []
    yield started
    for server in started:
        server.stop(timeout=CLEANUP_STOP_TIMEOUT)


def get_request(query=''):
    return fcgi_wire.cgi_params(method='GET', path='/', query=query)


def answer_one(server, query=''):
    """Send one GET on a new connection and return its Response."""
    with fcgi_wire.Client(server.address) as client:
        return client.request(get_request(query))


def resource_counts(server):
    stats = procinfo.tree_stats(server.pid)
    return stats['threads'], stats['fds']


def settled_baseline(server):
    """Return (threads, fds) once two reads 0.2 s apart agree."""
    previous = resource_counts(server)
    for _ in range(25):
        time.sleep(0.2)
        current = resource_counts(server)
        if current == previous:
            return current
        previous = current
    return previous


def wait_back_to(server, baseline, timeout=SETTLE_TIMEOUT):
    """Wait until threads and fds are at most the baseline; return the counts."""
    def back():
        counts = resource_counts(server)
        if counts[0] <= baseline[0] and counts[1] <= baseline[1]:
            return counts
        return None

    counts = procinfo.wait_until(back, timeout, interval=0.1)
    return counts or resource_counts(server)


def settled_children(server, count, timeout=10.0):
    """Wait until the prefork parent has ``count`` children, the same pids
    for 0.5 s, and return them (or the last pids seen).

    Upstream forks spares and ends extra ones for a moment after each
    connection, the readiness probe included; tests start from the steady
    state.
    """
    deadline = time.time() + timeout
    previous = None
    children = procinfo.child_pids(server.pid)
    for _ in range(int(timeout / 0.5) + 1):
        children = procinfo.child_pids(server.pid)
        if len(children) == count and children == previous:
            return children
        previous = children
        if time.time() >= deadline:
            break
        time.sleep(0.5)
    return children


def reset_after_first_stdout(server, query):
    """Start a streamed GET and reset the connection after its first STDOUT record."""
    client = fcgi_wire.Client(server.address)
    try:
        client.send(fcgi_wire.begin(1)
                    + fcgi_wire.params(1, get_request(query))
                    + fcgi_wire.stdin(1, b''))
        client.recv_records(until=lambda rec: rec.type == fcgi_wire.STDOUT,
                            timeout=5.0)
    finally:
        client.reset()


def stdout_records(response):
    return [rec for rec in response.records
            if rec.type == fcgi_wire.STDOUT and rec.content]


# ---------------------------------------------------------------------------
# Hang-ups

@pytest.mark.hangup
def test_multiplexed_reset_mid_stdin(servers):
    """Resets while the app waits for the rest of a POST body free everything."""
    server = start_server('threaded', 'read_body', multiplexed=True, kw=ONE_SPARE)
    servers.append(server)
    assert answer_one(server).status == 200
    baseline = settled_baseline(server)

    post = fcgi_wire.cgi_params(method='POST', path='/', body=b'x' * 100)
    assert post['CONTENT_LENGTH'] == '100'
    for _ in range(RESET_COUNT):
        client = fcgi_wire.Client(server.address)
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.params(1, post)
                    + fcgi_wire.record(fcgi_wire.STDIN, 1, b'y' * 10))
        # Let the server start the application, which then blocks reading.
        time.sleep(0.05)
        client.reset()

    threads, fds = wait_back_to(server, baseline)
    assert threads <= baseline[0], 'threads %d, %d before the resets' % (threads, baseline[0])
    assert fds <= baseline[1], 'fds %d, %d before the resets' % (fds, baseline[1])
    assert answer_one(server).status == 200


@pytest.mark.hangup
def test_multiplexed_reset_mid_app(servers):
    """Resets while the app sleeps free everything."""
    server = start_server('threaded', 'sleep', multiplexed=True, kw=ONE_SPARE)
    servers.append(server)
    assert answer_one(server, 't=0').status == 200
    baseline = settled_baseline(server)

    for _ in range(RESET_COUNT):
        client = fcgi_wire.Client(server.address)
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.params(1, get_request('t=0.3'))
                    + fcgi_wire.stdin(1, b''))
        time.sleep(0.05)
        client.reset()

    threads, fds = wait_back_to(server, baseline)
    assert threads <= baseline[0], 'threads %d, %d before the resets' % (threads, baseline[0])
    assert fds <= baseline[1], 'fds %d, %d before the resets' % (fds, baseline[1])
    assert answer_one(server, 't=0').status == 200


@pytest.mark.hangup
def test_multiplexed_reset_mid_stream(servers):
    """Resets after the first record of a 40 x 64 KiB reply free everything."""
    server = start_server('threaded', 'stream', multiplexed=True, kw=ONE_SPARE)
    servers.append(server)
    assert answer_one(server, 'n=1&size=10').status == 200
    baseline = settled_baseline(server)

    for _ in range(5):
        reset_after_first_stdout(server, 'n=40&size=65536')

    threads, fds = wait_back_to(server, baseline)
    assert threads <= baseline[0], 'threads %d, %d before the resets' % (threads, baseline[0])
    assert fds <= baseline[1], 'fds %d, %d before the resets' % (fds, baseline[1])
    assert answer_one(server, 'n=1&size=10').status == 200


@pytest.mark.hangup
def test_threaded_reset_closes_sockets(servers):
    """Non-multiplexed: a reset closes the socket at once, not at garbage collection."""
    server = start_server('threaded', 'stream', kw=ONE_SPARE)
    servers.append(server)
    assert answer_one(server, 'n=1&size=10').status == 200
    baseline = settled_baseline(server)

    for _ in range(5):
        reset_after_first_stdout(server, 'n=40&size=65536')

    # The garbage collector may close leaked sockets much later, so the
    # bound is a few seconds, shorter than SETTLE_TIMEOUT.
    threads, fds = wait_back_to(server, baseline, timeout=3.0)
    assert fds <= baseline[1], 'fds %d, %d before the resets' % (fds, baseline[1])
    assert threads <= baseline[0], 'threads %d, %d before the resets' % (threads, baseline[0])
    assert answer_one(server, 'n=1&size=10').status == 200


@pytest.mark.hangup
def test_prefork_child_survives_resets(servers):
    """A prefork child whose reply is reset goes back to idle instead of dying."""
    server = start_server('prefork', 'stream',
                          kw={'minSpare': 1, 'maxSpare': 1, 'maxChildren': 1})
    servers.append(server)
    assert answer_one(server, 'n=1&size=10').status == 200
    children = settled_children(server, 1)
    assert len(children) == 1, 'children %r' % (children,)

    for _ in range(5):
        reset_after_first_stdout(server, 'n=40&size=65536')
        # One request at a time, so each reset reaches the same child.
        assert answer_one(server, 'n=1&size=10').status == 200

    assert procinfo.child_pids(server.pid) == children
    assert 'Traceback' not in server.log_text()


@pytest.mark.hangup
def test_no_keep_conn_bounded_drain(servers):
    """Without FCGI_KEEP_CONN the server closes its side though the client stays."""
    server = start_server('threaded', 'hello', kw=ONE_SPARE)
    servers.append(server)
    assert answer_one(server).status == 200
    baseline = settled_baseline(server)

    clients = []
    try:
        for _ in range(10):
            client = fcgi_wire.Client(server.address)
            clients.append(client)
            response = client.request(get_request(), keep_conn=False)
            assert response.status == 200

        deadline = time.time() + DRAIN_BOUND
        still_open = 0
        for client in clients:
            remaining = max(deadline - time.time(), 0.01)
            if not client.closed_by_peer(timeout=remaining):
                still_open += 1
        assert still_open == 0, '%d of 10 connections still open after %.0f s' % (still_open, DRAIN_BOUND)

        threads, fds = wait_back_to(server, baseline)
        assert threads <= baseline[0], 'threads %d, %d before' % (threads, baseline[0])
    finally:
        for client in clients:
            client.close()


@pytest.mark.hangup
@pytest.mark.parametrize('multiplexed', [False, True])
def test_sigterm_with_idle_connection(servers, multiplexed):
    """SIGTERM ends the server although a kept-alive connection is idle."""
    server = start_server('threaded', 'hello', multiplexed=multiplexed)
    servers.append(server)
    client = fcgi_wire.Client(server.address)
    try:
        response = client.request(get_request(), keep_conn=True)
        assert response.status == 200
        assert server.stop(timeout=SIGTERM_BOUND), 'still running %.0f s after SIGTERM' % SIGTERM_BOUND
    finally:
        client.close()


@pytest.mark.hangup
@pytest.mark.parametrize('keep_connection', [False, True])
def test_sigterm_prefork(servers, keep_connection):
    """SIGTERM ends an idle prefork server, with or without a kept-alive connection."""
    server = start_server('prefork', 'hello', kw={'minSpare': 1, 'maxSpare': 1})
    servers.append(server)
    children = settled_children(server, 1)
    assert len(children) == 1, 'children %r' % (children,)
    client = None
    try:
        if keep_connection:
            client = fcgi_wire.Client(server.address)
            assert client.request(get_request(), keep_conn=True).status == 200
            settled_children(server, 2)

        assert server.stop(timeout=SIGTERM_BOUND), 'still running %.0f s after SIGTERM' % SIGTERM_BOUND
        assert server.leftover_pids == []
    finally:
        if client is not None:
            client.close()


# ---------------------------------------------------------------------------
# Defaults and protocol replies

GET_VALUES_NAMES = [fcgi_wire.MAX_CONNS, fcgi_wire.MAX_REQS,
                    fcgi_wire.MPXS_CONNS]


def query_values(server):
    with fcgi_wire.Client(server.address) as client:
        return client.get_values(GET_VALUES_NAMES)


@pytest.mark.defaults
@pytest.mark.parametrize('model, multiplexed, expected_mpxs', [
    ('threaded', False, '0'),
    ('threaded', True, '1'),
    ('prefork', False, '0'),
])
def test_get_values_positive(servers, model, multiplexed, expected_mpxs):
    """FCGI_GET_VALUES_RESULT contains all three names with positive values."""
    server = start_server(model, 'hello', multiplexed=multiplexed)
    servers.append(server)
    values = query_values(server)

    assert sorted(values) == sorted(GET_VALUES_NAMES)
    assert int(values[fcgi_wire.MAX_CONNS]) > 0
    assert int(values[fcgi_wire.MAX_REQS]) > 0
    assert values[fcgi_wire.MPXS_CONNS] == expected_mpxs


@pytest.mark.defaults
def test_large_body_record_sizes(servers):
    """A 200,000-byte reply arrives whole, in records of at most 65535 bytes."""
    server = start_server('threaded', 'stream')
    servers.append(server)
    response = answer_one(server, 'n=1&size=200000')

    assert response.protocol_status == fcgi_wire.REQUEST_COMPLETE
    assert response.status == 200
    assert len(response.body) == 200000
    sizes = [len(rec.content) for rec in stdout_records(response)]
    assert max(sizes) <= fcgi_wire.MAX_CONTENT_LENGTH


@pytest.mark.defaults
def test_prefork_spawns_for_busy_children(servers):
    """Busy children make the parent fork more, so 3 slow requests overlap."""
    server = start_server('prefork', 'sleep',
                          kw={'minSpare': 1, 'maxSpare': 1, 'maxChildren': 4})
    servers.append(server)
    children = settled_children(server, 1)
    assert len(children) == 1, 'children %r' % (children,)

    clients = [fcgi_wire.Client(server.address) for _ in range(3)]
    try:
        started = time.time()
        for client in clients:
            client.send(fcgi_wire.begin(1)
                        + fcgi_wire.params(1, get_request('t=1'))
                        + fcgi_wire.stdin(1, b''))
        for client in clients:
            records = client.recv_records(
                until=lambda rec: rec.type == fcgi_wire.END_REQUEST,
                timeout=10.0)
            assert records[-1].type == fcgi_wire.END_REQUEST
        elapsed = time.time() - started
    finally:
        for client in clients:
            client.close()

    # One child replies at about 1, 2 and 3 s, enough children at about 1 s.
    assert elapsed < 2.5, 'three 1 s requests took %.1f s' % elapsed


@pytest.mark.defaults
def test_prefork_sigusr1_replaces_children(servers):
    """SIGUSR1 replaces idle children, with no request to wake the parent,
    and the parent keeps serving."""
    server = start_server('prefork', 'hello', kw={'minSpare': 1, 'maxSpare': 1})
    servers.append(server)
    assert answer_one(server).status == 200
    before = settled_children(server, 1)
    assert len(before) == 1, 'children %r' % (before,)

    server.send_signal(signal.SIGUSR1)

    def replaced():
        children = procinfo.child_pids(server.pid)
        return children and not set(children) & set(before)

    assert procinfo.wait_until(replaced, 15.0, interval=0.1), \
        'children %r not replaced after 15 s, now %r; log:\n%s' % (
            before, procinfo.child_pids(server.pid), server.log_text())
    assert server.is_running()
    for _ in range(5):
        assert answer_one(server).status == 200


@pytest.mark.defaults
def test_prefork_ignores_multiplexed(servers):
    """multiplexed=True on the prefork server still gives one request per connection."""
    server = start_server('prefork', 'sleep', multiplexed=True)
    servers.append(server)

    with fcgi_wire.Client(server.address) as client:
        client.send(fcgi_wire.begin(1, keep_conn=True)
                    + fcgi_wire.begin(2, keep_conn=True)
                    + fcgi_wire.params(1, get_request('t=0'))
                    + fcgi_wire.stdin(1, b'')
                    + fcgi_wire.params(2, get_request('t=0'))
                    + fcgi_wire.stdin(2, b''))
        records = client.recv_records(
            until=lambda rec: rec.type == fcgi_wire.END_REQUEST and rec.request_id == 1,
            timeout=10.0)

    ends = dict((rec.request_id, fcgi_wire.parse_end_request(rec.content)[1])
                for rec in records if rec.type == fcgi_wire.END_REQUEST)
    assert ends.get(2) == fcgi_wire.CANT_MPX_CONN, 'END_REQUEST statuses %r' % (ends,)
    assert ends.get(1) == fcgi_wire.REQUEST_COMPLETE
    first = fcgi_wire.Response(1, records)
    assert first.status == 200
    for _ in range(3):
        assert answer_one(server, 't=0').status == 200
    assert query_values(server)[fcgi_wire.MPXS_CONNS] == '0'


@pytest.mark.defaults
@pytest.mark.parametrize('value, multiplexed, expected_mpxs', [
    ('0', True, '0'),
    ('off', True, '0'),
    ('FALSE', True, '0'),
    ('No', True, '0'),
    ('1', False, '1'),
    (' on ', False, '1'),
    # Blank counts as unset, so the argument decides.
    ('', True, '1'),
])
def test_flup_multiplexed_overrides_argument(servers, value, multiplexed, expected_mpxs):
    """FLUP_MULTIPLEXED sets the mode whatever the multiplexed argument is."""
    server = start_server('threaded', 'hello', multiplexed=multiplexed,
                          env={'FLUP_MULTIPLEXED': value})
    servers.append(server)

    assert query_values(server)[fcgi_wire.MPXS_CONNS] == expected_mpxs
    assert answer_one(server).status == 200


@pytest.mark.defaults
def test_flup_multiplexed_invalid_value():
    """An invalid FLUP_MULTIPLEXED stops start-up with a message naming it."""
    server = ServerProcess('threaded', 'hello', bind='tcp', multiplexed=True,
                           env={'FLUP_MULTIPLEXED': 'maybe'}, ready_timeout=10.0)
    try:
        with pytest.raises(ServerStartError) as excinfo:
            server.start()
    finally:
        server.stop(timeout=SIGTERM_BOUND)
    # The error message contains the server's log.
    message = str(excinfo.value)

    assert 'exited with status' in message
    assert 'FLUP_MULTIPLEXED' in message
    assert 'maybe' in message


@pytest.mark.defaults
@pytest.mark.parametrize('multiplexed', [False, True])
def test_threaded_no_deprecated_api(servers, multiplexed):
    """With DeprecationWarning as an error the threaded server starts, serves and stops."""
    server = start_server('threaded', 'hello', multiplexed=multiplexed,
                          env={'PYTHONWARNINGS': 'error::DeprecationWarning'})
    servers.append(server)

    assert answer_one(server).status == 200
    assert server.stop(timeout=SIGTERM_BOUND), 'still running %.0f s after SIGTERM' % SIGTERM_BOUND
    assert server.returncode == 0, 'exit status %r' % (server.returncode,)


@pytest.mark.defaults
@pytest.mark.parametrize('model, bind, allowed', [
    ('threaded', 'unix', '127.0.0.1'),
    ('prefork', 'unix', '127.0.0.1'),
    ('threaded', 'tcp6', '::1'),
])
def test_web_server_addrs_peers(servers, model, bind, allowed):
    """FCGI_WEB_SERVER_ADDRS admits listed IPv6 peers and every Unix socket peer."""
    server = ServerProcess(model, 'hello', bind=bind,
                           env={'FCGI_WEB_SERVER_ADDRS': allowed}).start()
    servers.append(server)

    assert answer_one(server).status == 200


@pytest.mark.defaults
def test_web_server_addrs_refuses_others(servers):
    """A TCP peer that FCGI_WEB_SERVER_ADDRS does not list gets no answer."""
    server = start_server('threaded', 'hello', env={'FCGI_WEB_SERVER_ADDRS': '127.0.0.2'})
    servers.append(server)

    with fcgi_wire.Client(server.address) as client:
        # The close may arrive as EOF (PeerClosed) or as a reset of the send.
        with pytest.raises((fcgi_wire.PeerClosed, socket.error)):
            client.request(get_request(), timeout=5.0)
