"""Hostile and broken peers against the FastCGI, SCGI and AJP servers.

Each test plays a misbehaving web server: resets at odd moments, malformed
records, floods, peers that stop reading.  Whatever arrives, the server must
log one line, never log a traceback for the peer's fault, free its threads,
sockets and children, and serve the next request.  Servers run in this process (``InProcessServer``) when a test
needs an inline application or ``caplog``, and through ``serve.py``
otherwise.
"""

from __future__ import absolute_import

import logging
import os
import signal
import socket
import struct
import time

import pytest

from flup.server import ajp, fcgi, fcgi_single, scgi

from . import fcgi_wire as wire
from . import gateway_wire as gateway
from .support.inprocess import InProcessServer
from .support.procinfo import tree_stats, wait_until


def hello_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'hello']


def echo_body_app(environ, start_response):
    body = environ['wsgi.input'].read()
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return [body]


def get_params(**kwargs):
    return wire.cgi_params(method='GET', **kwargs)


def assert_served(address, keep_conn=False):
    """Check that a plain GET on a new connection gets its 200 response."""
    with wire.Client(address, timeout=10.0) as client:
        response = client.request(get_params(), keep_conn=keep_conn)
    assert response.protocol_status == wire.REQUEST_COMPLETE
    assert response.status == 200


def flup_errors(caplog):
    """Return flup log records at ERROR or above, or with a traceback."""
    return [record for record in caplog.records
            if record.name.startswith('flup')
            and (record.levelno >= logging.ERROR or record.exc_info)]


def end_requests(records, request_id=None):
    return [rec for rec in records if rec.type == wire.END_REQUEST
            and (request_id is None or rec.request_id == request_id)]


# FastCGI management records.

@pytest.mark.parametrize('multiplexed', [False, True])
def test_get_values_flood_of_known_names(caplog, multiplexed):
    # 4000 copies of one known name fill a record.  A result with a value
    # for every copy would need more than the 65535 bytes a record carries.
    names = [(wire.MAX_CONNS, b'')] * 4000
    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(fcgi.WSGIServer, hello_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            client.send(wire.record(wire.GET_VALUES, 0, wire.pairs(names)))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.GET_VALUES_RESULT,
                timeout=5.0)
            response = client.request(get_params(), keep_conn=True)
    assert records[-1].type == wire.GET_VALUES_RESULT
    values = wire.parse_pairs(records[-1].content)
    assert [name for name, _ in values] == [wire.MAX_CONNS.encode('ascii')]
    assert response.status == 200
    assert flup_errors(caplog) == []


@pytest.mark.parametrize('multiplexed', [False, True])
def test_get_values_flood_of_unknown_names(multiplexed):
    names = [('X_UNKNOWN_%d' % index, b'') for index in range(3000)]
    with InProcessServer(fcgi.WSGIServer, hello_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            client.send(wire.record(wire.GET_VALUES, 0, wire.pairs(names)))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.GET_VALUES_RESULT,
                timeout=5.0)
            response = client.request(get_params(), keep_conn=True)
    assert records[-1].content == b''
    assert response.status == 200


@pytest.mark.parametrize('record_type', [0, 3, 6, 10, 12, 255])
def test_unknown_management_types_answered(record_type):
    with InProcessServer(fcgi.WSGIServer, hello_app) as running:
        with wire.Client(running.address) as client:
            client.send(wire.record(record_type, 0, b'abc'))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.UNKNOWN_TYPE, timeout=5.0)
            response = client.request(get_params(), keep_conn=True)
    assert wire.parse_unknown_type(records[-1].content) == record_type
    assert response.status == 200


GET_PAIR = wire.pairs(get_params())

# (name, bytes, expected text in the warning)
FASTCGI_VIOLATIONS = [
    ('version 0', wire.record(wire.BEGIN_REQUEST, 1, b'\0\1' + b'\0' * 6,
                              version=0), 'version 0'),
    ('version 2', wire.record(wire.BEGIN_REQUEST, 1, b'\0\1' + b'\0' * 6,
                              version=2), 'version 2'),
    ('type 0 for a request', wire.record(0, 1, b'abc'), 'record type 0'),
    ('type 12 for a request', wire.record(12, 1), 'record type 12'),
    ('type 255 for a request', wire.record(255, 1, b'x'), 'record type 255'),
    ('STDOUT from the web server', wire.record(wire.STDOUT, 1, b'x'),
     'record type 6'),
    ('duplicate BEGIN_REQUEST', wire.begin(1) + wire.begin(1),
     'already open'),
    ('short BEGIN_REQUEST', wire.record(wire.BEGIN_REQUEST, 1, b'\0\1'),
     'body is 2 bytes'),
    ('pair lengths of 2**31-1', wire.begin(1) + wire.record(
        wire.PARAMS, 1, wire.encode_length(0x7fffffff, True) * 2 + b'ab')
     + wire.record(wire.PARAMS, 1), 'name-value pair needs'),
    ('STDIN before PARAMS end', wire.begin(1) + wire.stdin(1, b'x'),
     'FCGI_STDIN received while the request expects FCGI_PARAMS'),
    ('PARAMS after their end', wire.begin(1) + wire.params(1, get_params())
     + wire.record(wire.PARAMS, 1, GET_PAIR), 'after the end'),
    ('GET_VALUES with a cut pair', wire.record(wire.GET_VALUES, 0,
                                               b'\x7f\x01ab'),
     'name-value pair needs'),
    ('HTTP request', b'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n',
     'version 71'),
]


@pytest.mark.parametrize('server_class,multiplexed', [
    (fcgi.WSGIServer, False), (fcgi.WSGIServer, True),
    (fcgi_single.WSGIServer, False),
], ids=['threaded', 'threaded-multiplexed', 'single'])
def test_protocol_violations_close(caplog, server_class, multiplexed):
    called = []

    def app(environ, start_response):
        called.append(environ.get('PATH_INFO'))
        return hello_app(environ, start_response)

    caplog.set_level(logging.DEBUG, logger='flup')
    results = []
    with InProcessServer(server_class, app, multiplexed=multiplexed,
                         readTimeout=5) as running:
        for name, payload, expected in FASTCGI_VIOLATIONS:
            caplog.clear()
            with wire.Client(running.address) as client:
                client.send(payload)
                closed = client.closed_by_peer(timeout=5.0)
            warnings = [record.getMessage() for record in caplog.records
                        if record.levelno == logging.WARNING]
            results.append((name, closed, warnings, expected))
        assert_served(running.address)
    for name, closed, warnings, expected in results:
        assert closed, name
        assert len(warnings) == 1, (name, warnings)
        assert expected in warnings[0], (name, warnings[0])
        assert '127.0.0.1' in warnings[0], name
    assert called == ['/']
    assert flup_errors(caplog) == []


# FastCGI request input.

@pytest.mark.parametrize('multiplexed', [False, True])
def test_non_ascii_digit_content_length(caplog, multiplexed):
    # U+00B2 (superscript two) is a digit to str.isdigit() on Python 3, but
    # int() rejects it.  The value reaches the server as one latin-1 byte.
    params = get_params()
    params['CONTENT_LENGTH'] = b'\xb2'
    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(fcgi.WSGIServer, echo_body_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            response = client.request(params, body=b'ab')
    assert response.protocol_status == wire.REQUEST_COMPLETE
    assert response.status == 200
    assert flup_errors(caplog) == []


@pytest.mark.parametrize('multiplexed', [False, True])
def test_abort_before_params_end(multiplexed):
    # FastCGI 1.0 section 5.4: the application responds to
    # FCGI_ABORT_REQUEST with FCGI_END_REQUEST, even for a request whose
    # PARAMS had not ended.
    started = []

    def app(environ, start_response):
        started.append(environ.get('HTTP_X_TEST'))
        return hello_app(environ, start_response)

    with InProcessServer(fcgi.WSGIServer, app, multiplexed=multiplexed,
                         readTimeout=5.0) as running:
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, keep_conn=True)
                        + wire.record(wire.PARAMS, 1, wire.pairs(
                            {'HTTP_X_TEST': 'first'}))
                        + wire.abort(1))
            records = client.recv_records(until=lambda rec: rec.type == wire.END_REQUEST,
                                          timeout=3.0)
            # The id is free again once FCGI_END_REQUEST was sent.
            response = client.request(
                get_params(headers={'X-Test': 'second'}), keep_conn=True,
                timeout=3.0)
    assert len(end_requests(records, 1)) == 1
    assert response.status == 200
    assert started == ['second']


def resident_megabytes(pid):
    with open('/proc/%d/status' % pid) as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) // 1024
    return 0


def test_multiplexed_stdin_past_content_length(server_factory):
    # The ``sleep`` app does not read its body, so the multiplexed reader
    # thread is the only one taking STDIN off the socket.  Bytes past
    # CONTENT_LENGTH can never be read by the application.
    server = server_factory('threaded', 'sleep', multiplexed=True,
                            kw={'readTimeout': 5})
    assert_served(server.address)
    before = resident_megabytes(server.pid)
    params = wire.cgi_params(method='POST', query='t=1',
                             headers={'Content-Length': '10'})
    chunk = wire.record(wire.STDIN, 1, b'x' * 65535)
    with wire.Client(server.address) as client:
        client.send(wire.begin(1) + wire.params(1, params))
        for _ in range(1024):  # 64 MiB
            client.send(chunk)
        client.send(wire.record(wire.STDIN, 1))
        grown = resident_megabytes(server.pid) - before
        records = client.recv_records(until=lambda rec: (
            rec.type == wire.END_REQUEST), timeout=10.0)
    assert grown < 16, 'the server grew by %d MiB' % grown
    assert wire.Response(1, records).status == 200


def test_multiplexed_pending_params_bounded(caplog):
    # Each request stays under the 1 MiB PARAMS limit, but 8 open requests
    # would make one connection buffer 8 MiB, and 256 of them 256 MiB.
    caplog.set_level(logging.DEBUG, logger='flup')
    chunk = b'\x7f' * 65535
    with InProcessServer(fcgi.WSGIServer, hello_app, multiplexed=True,
                         readTimeout=5) as running:
        with wire.Client(running.address) as client:
            try:
                for request_id in range(1, 9):
                    client.send(wire.begin(request_id)
                                + wire.record(wire.PARAMS, request_id, chunk)
                                * 15)
            except socket.error:  # the server closed the connection early
                pass
            closed = client.closed_by_peer(timeout=5.0)
        assert_served(running.address)
    assert closed
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'limit' in warnings[0]
    assert flup_errors(caplog) == []


@pytest.mark.parametrize('multiplexed', [False, True])
def test_aborted_params_free_the_budget(multiplexed):
    # 4 values of 200,000 bytes: under the 256 KiB value limit, and 800 KB
    # together, so two such requests only fit if the first one's PARAMS are
    # forgotten when it is aborted.
    headers = [('X-Big-%d' % index, 'v' * 200000) for index in range(4)]
    params = get_params(headers=headers)
    with InProcessServer(fcgi.WSGIServer, hello_app, multiplexed=multiplexed,
                         readTimeout=5) as running:
        with wire.Client(running.address) as client:
            first = wire.params(1, params)
            client.send(wire.begin(1, keep_conn=True)
                        + first[:len(first) - 8] + wire.abort(1))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=5.0)
            response = client.request(params, request_id=2, keep_conn=True)
    assert end_requests(records, 1)
    assert response.status == 200


def test_rejected_role_without_keep_conn_closes():
    # FastCGI 1.0 section 5.1: without FCGI_KEEP_CONN the application
    # closes the connection after its FCGI_END_REQUEST.
    with InProcessServer(fcgi.WSGIServer, hello_app, readTimeout=5) as running:
        with wire.Client(running.address) as client:
            client.send(wire.begin(1, role=wire.AUTHORIZER)
                        + wire.params(1, get_params()))
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=3.0)
            closed = client.closed_by_peer(timeout=1.0)
    status = wire.parse_end_request(records[-1].content)[1]
    assert status == wire.UNKNOWN_ROLE
    assert closed


def trickle(sock, data, interval, max_seconds):
    """Send ``data`` one byte per ``interval`` seconds and return the
    seconds spent.  Sending stops after ``max_seconds`` or when the peer
    closes."""
    started = time.time()
    for index in range(len(data)):
        if time.time() - started > max_seconds:
            break
        try:
            sock.sendall(data[index:index + 1])
        except socket.error:
            break
        time.sleep(interval)
    return time.time() - started


@pytest.mark.parametrize('multiplexed', [False, True])
def test_fastcgi_trickled_head_deadline(caplog, multiplexed):
    # readTimeout bounds the whole request head, not only each silence, so
    # one byte per 50 ms cannot hold a connection and its thread forever.
    message = wire.begin(1) + wire.params(1, get_params())
    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(fcgi.WSGIServer, hello_app, multiplexed=multiplexed,
                         readTimeout=1) as running:
        with wire.Client(running.address) as client:
            spent = trickle(client.sock, message, 0.05, 4.0)
    assert spent < 3.0, 'the server read a trickle for %.1f s' % spent
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert '127.0.0.1' in warnings[0]
    assert flup_errors(caplog) == []


@pytest.mark.parametrize('server_class,message', [
    (scgi.WSGIServer, gateway.scgi_request(gateway.cgi_params())),
    (ajp.WSGIServer, gateway.ajp_forward_request()),
], ids=['scgi', 'ajp'])
def test_gateway_trickled_head_deadline(caplog, server_class, message):
    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(server_class, hello_app, readTimeout=1) as running:
        sock = gateway.connect(running.address)
        try:
            spent = trickle(sock, message, 0.05, 4.0)
        finally:
            sock.close()
    assert spent < 3.0, 'the server read a trickle for %.1f s' % spent
    warnings = gateway_warnings(caplog)
    assert len(warnings) == 1
    assert 'readTimeout' in warnings[0].getMessage()


@pytest.mark.parametrize('multiplexed', [False, True])
def test_one_byte_records(multiplexed):
    # FastCGI 1.0 section 3.3 lets a stream be cut anywhere, even inside a
    # name-value pair, so PARAMS and STDIN arrive here one byte per record.
    body = os.urandom(3000)
    params = wire.cgi_params(method='POST', body=body)
    message = (wire.begin(1, keep_conn=True) + wire.params(1, params, chunk=1)
               + wire.stdin(1, body, chunk=1))
    with InProcessServer(fcgi.WSGIServer, echo_body_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            client.send(message)
            records = client.recv_records(
                until=lambda rec: rec.type == wire.END_REQUEST, timeout=10.0)
            again = client.request(get_params(), keep_conn=True)
    assert wire.Response(1, records).body == body
    assert again.status == 200


@pytest.mark.parametrize('multiplexed', [False, True])
def test_empty_records_between_requests(multiplexed):
    # Empty records that carry no meaning here: an empty FCGI_GET_VALUES,
    # an abort and a STDIN end for ids that are not open, and padding only.
    noise = (wire.record(wire.GET_VALUES, 0)
             + wire.abort(7)
             + wire.record(wire.STDIN, 9)
             + wire.record(wire.DATA, 9, padding=255))
    with InProcessServer(fcgi.WSGIServer, hello_app,
                         multiplexed=multiplexed) as running:
        with wire.Client(running.address) as client:
            client.send(noise)
            result = client.recv_records(
                until=lambda rec: rec.type == wire.GET_VALUES_RESULT)
            response = client.request(get_params(), keep_conn=True)
    assert result[-1].content == b''
    assert response.status == 200


@pytest.mark.parametrize('server_class,multiplexed', [
    (fcgi.WSGIServer, False), (fcgi.WSGIServer, True),
    (fcgi_single.WSGIServer, False),
], ids=['threaded', 'threaded-multiplexed', 'single'])
def test_peer_that_never_reads(caplog, server_class, multiplexed):
    def big_app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return (b'x' * 65536 for _ in range(400))

    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(server_class, big_app, multiplexed=multiplexed,
                         readTimeout=1, gracePeriod=1) as running:
        with wire.Client(running.address) as client:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.send(wire.begin(1) + wire.params(1, get_params())
                        + wire.stdin(1, b''))
            released = wait_until(lambda: running.server.stats()[
                'aborted_requests'] == 1, 6.0)
            stats = running.server.stats()
        assert_served(running.address)
    assert released, stats
    assert stats['active_requests'] == 0
    aborted = [record.getMessage() for record in caplog.records
               if 'aborted' in record.getMessage()
               and record.levelno == logging.INFO]
    assert len(aborted) == 1
    assert 'timed out' in aborted[0]
    assert flup_errors(caplog) == []


# FastCGI hang-ups at every stage, against each process model.

# Pools kept small so that idle threads and children settle at a known count.
MODEL_KEYWORDS = {
    'threaded': {'minSpare': 1, 'maxSpare': 1, 'readTimeout': 2,
                 'gracePeriod': 1},
    'prefork': {'minSpare': 1, 'maxSpare': 1, 'maxChildren': 4,
                'readTimeout': 2, 'gracePeriod': 1},
    'single': {'readTimeout': 2, 'gracePeriod': 1},
}

MODEL_IDS = ['threaded', 'threaded-multiplexed', 'prefork', 'single']
MODEL_CASES = [('threaded', False), ('threaded', True), ('prefork', False),
               ('single', False)]

# Query string of the ``stream`` app: 40 chunks of 64 KiB, more than the
# socket buffers hold, so the server is still writing when the reset comes.
BIG_STREAM = 'n=40&size=65536'


def stream_params(query='n=1&size=16', **kwargs):
    return wire.cgi_params(method='GET', query=query, **kwargs)


def first_record_of(client, record_type, timeout=5.0):
    return client.recv_records(until=lambda rec: rec.type == record_type,
                               timeout=timeout)


def reset_mid_header(address):
    with wire.Client(address) as client:
        client.send(wire.begin(1)[:5])
        client.reset()


def reset_mid_params(address):
    with wire.Client(address) as client:
        client.send(wire.begin(1) + wire.params(1, stream_params())[:40])
        client.reset()


def reset_mid_stdin(address):
    params = wire.cgi_params(method='POST', query=BIG_STREAM,
                             headers={'Content-Length': '100'})
    with wire.Client(address) as client:
        client.send(wire.begin(1) + wire.params(1, params)
                    + wire.record(wire.STDIN, 1, b'x' * 10))
        client.reset()


def reset_while_writing(address):
    with wire.Client(address) as client:
        client.send(wire.begin(1) + wire.params(1, stream_params(BIG_STREAM))
                    + wire.stdin(1, b''))
        first_record_of(client, wire.STDOUT)
        client.reset()


def reset_between_kept_requests(address):
    with wire.Client(address) as client:
        response = client.request(stream_params(), keep_conn=True)
        assert response.status == 200
        client.reset()


def reset_after_end_request(address):
    with wire.Client(address) as client:
        response = client.request(stream_params())
        assert response.status == 200
        client.reset()


def abort_while_writing(address):
    with wire.Client(address) as client:
        client.send(wire.begin(1, keep_conn=True)
                    + wire.params(1, stream_params(BIG_STREAM))
                    + wire.stdin(1, b''))
        first_record_of(client, wire.STDOUT)
        client.send(wire.abort(1))
        records = client.recv_records(until=lambda rec: (
            rec.type == wire.END_REQUEST), timeout=5.0)
        assert end_requests(records, 1)


HANG_UPS = [reset_mid_header, reset_mid_params, reset_mid_stdin,
            reset_while_writing, reset_between_kept_requests,
            reset_after_end_request, abort_while_writing]


def settled_stats(pid, timeout=10.0):
    """Return ``tree_stats(pid)`` once two reads 0.3 s apart agree."""
    previous = [None]

    def settled():
        stats = tree_stats(pid)
        key = (stats['threads'], stats['fds'], len(stats['children']))
        stable = key == previous[0]
        previous[0] = key
        return stats if stable else None

    return wait_until(settled, timeout, interval=0.3) or tree_stats(pid)


def no_more_than(baseline):
    """Return a predicate: the server's counts are back to ``baseline``."""
    def check():
        stats = tree_stats(baseline['pid'])
        if (stats['threads'] <= baseline['threads']
                and stats['fds'] <= baseline['fds']
                and len(stats['children']) <= len(baseline['children'])):
            return stats
        return None
    return check


@pytest.mark.hangup
@pytest.mark.parametrize('model,multiplexed', MODEL_CASES, ids=MODEL_IDS)
def test_hang_ups_at_every_stage(server_factory, model, multiplexed):
    server = server_factory(model, 'stream', multiplexed=multiplexed,
                            kw=MODEL_KEYWORDS[model])
    assert_served(server.address)
    baseline = settled_stats(server.pid)
    baseline['pid'] = server.pid

    for _ in range(2):
        for hang_up in HANG_UPS:
            hang_up(server.address)
    assert_served(server.address)

    recovered = wait_until(no_more_than(baseline), 10.0, interval=0.2)
    final = tree_stats(server.pid)
    assert recovered, 'threads %d -> %d, fds %d -> %d, children %r -> %r' % (
        baseline['threads'], final['threads'], baseline['fds'],
        final['fds'], baseline['children'], final['children'])
    assert server.is_running()
    log_text = server.log_text()
    assert 'Traceback' not in log_text
    assert ' ERROR ' not in log_text


# Signals while requests are in flight.

def start_slow_requests(address, count, seconds):
    """Send ``count`` requests to the ``sleep`` app; return their clients."""
    clients = []
    for _ in range(count):
        client = wire.Client(address, timeout=10.0)
        client.send(wire.begin(1)
                    + wire.params(1, stream_params('t=%s' % seconds))
                    + wire.stdin(1, b''))
        clients.append(client)
    return clients


def close_all(clients):
    for client in clients:
        client.close()


SIGNAL_CASES = [
    ('threaded', False, signal.SIGHUP),
    ('threaded', True, signal.SIGTERM),
    ('prefork', False, signal.SIGTERM),
    ('prefork', False, signal.SIGHUP),
    ('single', False, signal.SIGINT),
]


@pytest.mark.parametrize(
    'model,multiplexed,signum', SIGNAL_CASES,
    ids=['threaded-SIGHUP', 'threaded-multiplexed-SIGTERM', 'prefork-SIGTERM',
         'prefork-SIGHUP', 'single-SIGINT'])
def test_stop_signal_storm_in_flight(server_factory, model, multiplexed,
                                     signum):
    server = server_factory(model, 'sleep', multiplexed=multiplexed,
                            kw=MODEL_KEYWORDS[model])
    clients = start_slow_requests(server.address, 2, 0.5)
    try:
        time.sleep(0.2)
        for _ in range(50):
            server.send_signal(signum)
        exited = wait_until(lambda: not server.is_running(), 8.0)
    finally:
        close_all(clients)
    assert exited, 'the server still runs 8 s after 50 signals'
    assert server.process.returncode == 0
    log_text = server.log_text()
    assert 'Traceback' not in log_text
    assert server.stop()
    assert server.leftover_pids == []


def test_prefork_sigusr1_storm(server_factory):
    server = server_factory('prefork', 'sleep',
                            kw={'minSpare': 2, 'maxSpare': 3,
                                'maxChildren': 6, 'readTimeout': 2,
                                'gracePeriod': 1})
    clients = start_slow_requests(server.address, 2, 0.5)
    try:
        for _ in range(30):
            server.send_signal(signal.SIGUSR1)
            time.sleep(0.01)
        responses = [client.recv_records(
            until=lambda rec: rec.type == wire.END_REQUEST, timeout=10.0)
            for client in clients]
    finally:
        close_all(clients)
    for records in responses:
        assert end_requests(records, 1)
    for _ in range(3):
        assert_served(server.address)
    children = wait_until(
        lambda: 2 <= len(tree_stats(server.pid)['children']) <= 3, 10.0)
    assert children
    assert 'Traceback' not in server.log_text()


def busy_children(server):
    """Return the pids of prefork children with an established connection."""
    processes = tree_stats(server.pid)['processes']
    return [pid for pid, stats in processes.items()
            if pid != server.pid and stats['sockets']['ESTABLISHED'] > 0]


def test_prefork_child_killed_mid_request(server_factory):
    server = server_factory('prefork', 'sleep',
                            kw={'minSpare': 1, 'maxSpare': 2,
                                'maxChildren': 4, 'readTimeout': 2,
                                'gracePeriod': 1})
    client = wire.Client(server.address, timeout=10.0)
    try:
        client.send(wire.begin(1) + wire.params(1, stream_params('t=5'))
                    + wire.stdin(1, b''))
        # The busy child is the one whose sockets include the connection.
        time.sleep(0.5)
        busy = busy_children(server)
        assert len(busy) == 1
        os.kill(busy[0], signal.SIGKILL)
        closed = client.closed_by_peer(timeout=5.0)
    finally:
        client.close()
    assert closed
    for _ in range(3):
        assert_served(server.address)
    assert server.is_running()
    assert wait_until(
        lambda: 1 <= len(tree_stats(server.pid)['children']) <= 2, 10.0)


def test_prefork_parent_killed_mid_request(server_factory):
    server = server_factory('prefork', 'sleep',
                            kw={'minSpare': 2, 'maxSpare': 3,
                                'maxChildren': 4, 'readTimeout': 2})
    client = wire.Client(server.address, timeout=10.0)
    try:
        client.send(wire.begin(1) + wire.params(1, stream_params('t=1'))
                    + wire.stdin(1, b''))
        time.sleep(0.3)
        children = tree_stats(server.pid)['children']
        os.kill(server.pid, signal.SIGKILL)
        records = client.recv_records(
            until=lambda rec: rec.type == wire.END_REQUEST, timeout=5.0)
    finally:
        client.close()

    def children_alive():
        return [pid for pid in children
                if os.path.exists('/proc/%d' % pid)
                and tree_stats(pid)['processes'][pid]['state'] != 'Z']

    assert len(children) >= 2
    assert wire.Response(1, records).status == 200
    assert wait_until(lambda: not children_alive(), 10.0), children_alive()


def test_prefork_child_stopped_before_first_request(server_factory):
    # A child asked to stop (by its parent with too many idle children, or
    # by a signal) right after accept() still waits about 1 s for the first
    # request on that connection, instead of closing it unanswered.
    server = server_factory('prefork', 'hello',
                            kw={'minSpare': 1, 'maxSpare': 2,
                                'maxChildren': 4, 'readTimeout': 5})
    with wire.Client(server.address) as client:
        found = wait_until(lambda: busy_children(server), 5.0)
        assert len(found) == 1
        os.kill(found[0], signal.SIGTERM)
        time.sleep(0.2)
        response = client.request(get_params())
    assert response.status == 200


# SCGI: malformed netstrings and headers.

def netstring(payload):
    return ('%d:' % len(payload)).encode('ascii') + payload + b','


def gateway_warnings(caplog):
    return [record for record in caplog.records
            if record.name.startswith('flup')
            and record.levelno == logging.WARNING]


def read_response(address, payload, timeout=5.0):
    """Send ``payload`` on a new connection; return what came back before
    the server closed it."""
    sock = gateway.connect(address, timeout)
    try:
        sock.sendall(payload)
        return gateway.read_until_close(sock)
    finally:
        sock.close()


SCGI_GARBAGE = [
    ('letters', b'abc:xx,', 'invalid netstring length'),
    ('http', b'GET / HTTP/1.0\r\nHost: x\r\n\r\n', 'invalid netstring length'),
    ('http without colon', b'GET / HTTP/1.0\r\n\r\n',
     'does not start with a netstring length'),
    ('binary', b'\x00\xff' * 40, 'does not start with a netstring length'),
    ('huge length', b'9999999999:', 'exceeds the limit'),
    ('eleven digits', b'12345678901:', 'more than 10 digits'),
    ('newline in length', b'5\n:CONTENT_LENGTH\x000\x00,',
     'invalid netstring length'),
    ('missing comma', netstring(b'CONTENT_LENGTH\x000\x00')[:-1] + b';',
     'does not end with a comma'),
    ('content length not first', netstring(b'SCGI\x001\x00CONTENT_LENGTH\x000\x00'),
     'not CONTENT_LENGTH'),
    ('content length letters', netstring(b'CONTENT_LENGTH\x00x\x00'),
     'invalid CONTENT_LENGTH'),
    ('content length newline', netstring(b'CONTENT_LENGTH\x003\n\x00') + b'abc',
     'invalid CONTENT_LENGTH'),
    ('no headers', b'0:,', 'no headers'),
    ('name without value', netstring(b'CONTENT_LENGTH\x000\x00X\x00'),
     'has no value'),
]


@pytest.mark.parametrize('payload,expected', [case[1:] for case in SCGI_GARBAGE],
                         ids=[case[0] for case in SCGI_GARBAGE])
def test_scgi_garbage_rejected(caplog, payload, expected):
    called = []

    def app(environ, start_response):
        called.append(environ)
        return hello_app(environ, start_response)

    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(scgi.WSGIServer, app, readTimeout=2) as running:
        response = read_response(running.address, payload)
        called_before = list(called)
        served = gateway.scgi_exchange(running.address, gateway.cgi_params())
    assert response.startswith(b'Status: 400')
    assert called_before == []
    warnings = gateway_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert expected in message
    assert '127.0.0.1' in message
    assert served.startswith(b'Status: 200')
    assert flup_errors(caplog) == []


# AJP 1.3: malformed packets and messages.

def ajp_forward_payload(method_code=2, uri=b'/', header_count=0, tail=b''):
    """Return a FORWARD_REQUEST payload with ``tail`` after the header count."""
    return (b'\x02' + struct.pack('B', method_code)
            + gateway.ajp_string('HTTP/1.1') + gateway.ajp_string(uri)
            + gateway.ajp_string('127.0.0.1') + gateway.ajp_string(None)
            + gateway.ajp_string('localhost') + struct.pack('>H', 80) + b'\x00'
            + struct.pack('>H', header_count) + tail)


# (name, bytes, expected text in the warning, whether a 400 comes back)
AJP_GARBAGE = [
    ('container magic', b'AB\x00\x01\x0a', 'invalid packet magic', False),
    ('http', b'GET / HTTP/1.0\r\n\r\n', 'invalid packet magic', False),
    ('unknown message type', gateway.ajp_packet(b'\x63'),
     'unexpected message type 99', False),
    ('string past the end', gateway.ajp_packet(
        b'\x02\x02' + gateway.ajp_string('HTTP/1.1')[:-1] + b'\x00\x10/ab'),
     'runs past the end', True),
    ('string without NUL', gateway.ajp_packet(
        b'\x02\x02' + struct.pack('>H', 8) + b'HTTP/1.1X'),
     'not NUL-terminated', True),
    ('unknown header code', gateway.ajp_packet(ajp_forward_payload(
        header_count=1, tail=b'\xa0\xff' + gateway.ajp_string('v') + b'\xff')),
     'unknown request header code 0xA0FF', True),
    ('unknown attribute code', gateway.ajp_packet(ajp_forward_payload(
        tail=b'\x42')), 'unknown request attribute code 0x42', True),
    ('unknown method code', gateway.ajp_packet(ajp_forward_payload(
        method_code=200, tail=b'\xff')), 'unknown method code 200', True),
    ('missing attribute end', gateway.ajp_packet(ajp_forward_payload()),
     'message ends early', True),
    ('body length mismatch', gateway.ajp_forward_request(
        method='POST', headers=[('Content-Length', '3')])
     + gateway.ajp_packet(b'\x00\x09abc'), 'body chunk says 9 bytes', False),
]


@pytest.mark.parametrize('payload,expected,bad_request',
                         [case[1:] for case in AJP_GARBAGE],
                         ids=[case[0] for case in AJP_GARBAGE])
def test_ajp_garbage_rejected(caplog, payload, expected, bad_request):
    caplog.set_level(logging.DEBUG, logger='flup')
    with InProcessServer(ajp.WSGIServer, echo_body_app,
                         readTimeout=2) as running:
        response = read_response(running.address, payload)
        sock = gateway.connect(running.address)
        try:
            sock.sendall(gateway.ajp_forward_request())
            served = gateway.ajp_read_response(sock)
        finally:
            sock.close()
    if bad_request:
        assert b'Bad Request' in response
    warnings = gateway_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert expected in message
    assert '127.0.0.1' in message
    assert served.status == 200
    assert flup_errors(caplog) == []


def test_ajp_cping_flood_answered():
    count = 2000
    with InProcessServer(ajp.WSGIServer, hello_app, readTimeout=2) as running:
        sock = gateway.connect(running.address)
        try:
            sock.sendall(gateway.ajp_cping() * count)
            pongs = [gateway.ajp_read_packet(sock) for _ in range(count)]
            sock.sendall(gateway.ajp_forward_request())
            served = gateway.ajp_read_response(sock)
        finally:
            sock.close()
    assert set(pongs) == set([b'\x09'])
    assert served.status == 200


# SCGI and AJP hang-ups, against the threaded and prefork models.

GATEWAY_KEYWORDS = {
    'scgi-threaded': {'minSpare': 1, 'maxSpare': 1, 'readTimeout': 2},
    'scgi-prefork': {'minSpare': 1, 'maxSpare': 1, 'maxChildren': 4,
                     'readTimeout': 2},
    'ajp-threaded': {'minSpare': 1, 'maxSpare': 1, 'readTimeout': 2},
    'ajp-prefork': {'minSpare': 1, 'maxSpare': 1, 'maxChildren': 4,
                    'readTimeout': 2},
}


def send_then_reset(address, payload, read_bytes=0):
    """Send ``payload``, read ``read_bytes`` of the response, then reset."""
    sock = gateway.connect(address)
    try:
        sock.sendall(payload)
        received = 0
        for _ in range(100):
            if received >= read_bytes:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += len(chunk)
    finally:
        gateway.reset_close(sock)


def scgi_hang_ups(address):
    big = gateway.scgi_request(gateway.cgi_params(query=BIG_STREAM))
    send_then_reset(address, big[:7])
    send_then_reset(address, gateway.scgi_request(
        gateway.cgi_params(query='n=1&size=16'), content_length=100)
        + b'x' * 10)
    send_then_reset(address, big, read_bytes=1)
    response = gateway.scgi_exchange(address, gateway.cgi_params())
    assert response.startswith(b'Status: 200')


def ajp_hang_ups(address):
    big = gateway.ajp_forward_request(query=BIG_STREAM)
    send_then_reset(address, big[:9])
    send_then_reset(address, gateway.ajp_forward_request(
        method='POST', headers=[('Content-Length', '100')])
        + gateway.ajp_body(b'x' * 10))
    send_then_reset(address, big, read_bytes=1)
    sock = gateway.connect(address)
    try:
        sock.sendall(gateway.ajp_forward_request(query='n=1&size=16'))
        kept = gateway.ajp_read_response(sock)
    finally:
        gateway.reset_close(sock)
    assert kept.status == 200
    assert kept.reuse


@pytest.mark.hangup
@pytest.mark.parametrize('model', sorted(GATEWAY_KEYWORDS))
def test_gateway_hang_ups_free_resources(server_factory, model):
    server = server_factory(model, 'stream', kw=GATEWAY_KEYWORDS[model])
    hang_ups = scgi_hang_ups if model.startswith('scgi') else ajp_hang_ups
    hang_ups(server.address)
    baseline = settled_stats(server.pid)
    baseline['pid'] = server.pid

    for _ in range(3):
        hang_ups(server.address)

    recovered = wait_until(no_more_than(baseline), 10.0, interval=0.2)
    final = tree_stats(server.pid)
    assert recovered, 'threads %d -> %d, fds %d -> %d, children %r -> %r' % (
        baseline['threads'], final['threads'], baseline['fds'],
        final['fds'], baseline['children'], final['children'])
    log_text = server.log_text()
    assert 'Traceback' not in log_text
    assert ' ERROR ' not in log_text
