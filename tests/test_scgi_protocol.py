"""The SCGI codec, fed by the independent encoder in tests/gateway_wire.py."""

from __future__ import absolute_import

import random

import pytest

from flup.server import _scgi_protocol as scgi
from flup.server.scgi_base import ProtocolError as PublicProtocolError
from tests import gateway_wire


def feed_all(data, piece_sizes=None):
    parser = scgi.HeaderParser()
    if piece_sizes is None:
        assert parser.feed(data)
        return parser
    position = 0
    done = False
    for size in piece_sizes:
        piece = data[position:position + size]
        position += size
        done = parser.feed(piece)
        if position >= len(data):
            break
    assert done
    return parser


def test_parser_whole_request():
    data = gateway_wire.scgi_request(gateway_wire.cgi_params('POST', '/x'), b'abc')
    parser = feed_all(data)
    assert parser.content_length == 3
    assert parser.rest == b'abc'
    assert dict(parser.headers)[b'REQUEST_METHOD'] == b'POST'


def test_parser_byte_by_byte_and_random_chunks():
    data = gateway_wire.scgi_request(gateway_wire.cgi_params('GET', '/y'), b'')
    by_byte = feed_all(data, [1] * len(data))
    rng = random.Random(7)
    chunked = feed_all(data, [rng.randint(1, 9) for _ in range(len(data))])
    assert by_byte.headers == chunked.headers
    assert by_byte.content_length == 0


def test_parser_waits_for_more():
    data = gateway_wire.scgi_request(gateway_wire.cgi_params(), b'')
    parser = scgi.HeaderParser()
    assert not parser.feed(data[:-1])
    assert parser.feed(data[-1:])


def netstring(payload):
    return str(len(payload)).encode('ascii') + b':' + payload + b','


@pytest.mark.parametrize('data, message', [
    (b'x:abc,', 'invalid netstring length'),
    (b'x', 'does not start with a netstring length'),
    (b'12345678901:', 'more than 10 digits'),
    (b'05:', 'leading zero'),
    (b':', 'invalid netstring length'),
    (b'3:a\x00b;', 'does not end with a comma'),
    (netstring(b'SCGI\x001\x00CONTENT_LENGTH\x00'), 'has no value'),
    (netstring(b'SCGI\x001\x00CONTENT_LENGTH\x000\x00'), 'first header is'),
    (netstring(b'CONTENT_LENGTH\x00x\x00SCGI\x001\x00'), 'invalid CONTENT_LENGTH'),
    (netstring(b'CONTENT_LENGTH\x000\x00SCGI\x002\x00'), 'unsupported SCGI version'),
    (b'2:ab,', 'not NUL-terminated'),
    (b'0:,', 'no headers'),
])
def test_parser_rejects_invalid(data, message):
    parser = scgi.HeaderParser()
    with pytest.raises(scgi.ProtocolError) as info:
        parser.feed(data)
    assert message in str(info.value)


def test_parser_accepts_missing_scgi_header():
    # nginx sends no SCGI header unless configured to.
    parser = scgi.HeaderParser()
    assert parser.feed(netstring(b'CONTENT_LENGTH\x003\x00REQUEST_METHOD\x00PUT\x00') + b'abc')
    assert parser.content_length == 3


def test_parser_rejects_oversized_header():
    parser = scgi.HeaderParser(max_length=100)
    with pytest.raises(scgi.ProtocolError) as info:
        parser.feed(b'101:')
    assert 'exceeds the limit' in str(info.value)


def test_parser_rejects_duplicate_content_length():
    payload = b'CONTENT_LENGTH\x000\x00SCGI\x001\x00CONTENT_LENGTH\x005\x00'
    with pytest.raises(scgi.ProtocolError):
        scgi.HeaderParser().feed(scgi.encode_netstring(payload))


def test_merge_headers_joins_repeated_http_headers():
    merged = scgi.merge_headers([(b'HTTP_COOKIE', b'a=1'), (b'HTTP_COOKIE', b'b=2'),
                                 (b'HTTP_ACCEPT', b'x'), (b'HTTP_ACCEPT', b'y'),
                                 (b'OTHER', b'1'), (b'OTHER', b'2')])
    assert merged[b'HTTP_COOKIE'] == b'a=1; b=2'
    assert merged[b'HTTP_ACCEPT'] == b'x, y'
    assert merged[b'OTHER'] == b'2'


def test_encode_request_head_round_trip():
    head = scgi.encode_request_head([(b'REQUEST_METHOD', b'PUT')], 5)
    parser = scgi.HeaderParser()
    assert parser.feed(head + b'hello')
    assert parser.headers[0] == (b'CONTENT_LENGTH', b'5')
    assert parser.rest == b'hello'


def test_encode_request_head_rejects_nul():
    with pytest.raises(ValueError):
        scgi.encode_request_head([(b'X', b'a\x00b')], 0)


@pytest.mark.parametrize('data, status, headers, body', [
    (b'Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope',
     b'404 Not Found', [(b'Content-Type', b'text/plain')], b'nope'),
    (b'Content-Type: text/html\n\n<p>', b'200 OK', [(b'Content-Type', b'text/html')], b'<p>'),
])
def test_parse_response_head(data, status, headers, body):
    assert scgi.parse_response_head(data) == (status, headers, body)


def test_parse_response_head_incomplete_and_invalid():
    assert scgi.parse_response_head(b'Status: 200 OK\r\n') is None
    with pytest.raises(scgi.ProtocolError):
        scgi.parse_response_head(b'garbage line\r\n\r\n')


def test_public_protocol_error_is_the_codec_one():
    assert PublicProtocolError is scgi.ProtocolError
