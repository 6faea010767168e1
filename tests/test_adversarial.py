"""Hostile and broken peers against the FastCGI, SCGI and AJP servers.

Each test plays a misbehaving web server (resets at odd moments, malformed
records, floods, peers that stop reading) and checks what every server must
do whatever it receives: log one line, never raise a traceback for the
peer's fault, free its threads, sockets and children, and answer the next
request.  Servers run in this process (``InProcessServer``) when a test
needs an inline application or ``caplog``, and through ``serve.py``
otherwise.
"""

from __future__ import absolute_import

import logging
import re
import signal
import socket
import struct
import threading
import time

import pytest

from flup.server import ajp, fcgi, fcgi_single, scgi

from . import fcgi_wire as wire
from .support.inprocess import InProcessServer
from .support.procinfo import tree_stats, wait_until

FASTCGI_MODELS = ['threaded', 'prefork', 'single']

# Log levels of records that a peer's fault may produce.
PEER_FAULT_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING)


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
    # 4000 copies of one known name fill a record; answering every copy
    # would need more than the 65535 bytes a record can carry.
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
    # FastCGI 1.0 section 5.4: the application answers FCGI_ABORT_REQUEST
    # with FCGI_END_REQUEST, even for a request whose PARAMS had not ended.
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
