"""The AJP 1.3 codec, fed by the independent encoder in tests/gateway_wire.py."""

from __future__ import absolute_import

import random
import struct

import pytest

from flup.server import _ajp_protocol as ajp
from flup.server.ajp_base import forward_request_params
from tests import gateway_wire as wire


def payloads(data, sizes=None):
    parser = ajp.PacketParser()
    found = []
    if sizes is None:
        sizes = [len(data)]
    position = 0
    for size in sizes:
        parser.feed(data[position:position + size])
        position += size
        while True:
            payload = parser.next_payload()
            if payload is None:
                break
            found.append(payload)
        if position >= len(data):
            break
    return found, parser


def forward(**options):
    packet = wire.ajp_forward_request(**options)
    return ajp.decode_forward_request(payloads(packet)[0][0])


def test_packet_parser_whole_byte_by_byte_and_random():
    data = (wire.ajp_forward_request() + wire.ajp_body(b'abc') + wire.ajp_body(b'')
            + wire.ajp_cping())
    whole, _ = payloads(data)
    by_byte, parser = payloads(data, [1] * len(data))
    rng = random.Random(3)
    chunked, _ = payloads(data, [rng.randint(1, 7) for _ in range(len(data))])
    assert len(whole) == 4
    assert whole == by_byte == chunked
    assert not parser.partial
    assert ajp.decode_body_chunk(whole[1]) == b'abc'
    assert ajp.decode_body_chunk(whole[2]) == b''
    assert ajp.message_type(whole[3]) == ajp.CPING


def test_packet_parser_rejects_bad_magic_early():
    parser = ajp.PacketParser()
    parser.feed(b'GE')
    with pytest.raises(ajp.ProtocolError) as info:
        parser.next_payload()
    assert 'magic' in str(info.value)


def test_forward_request_fields():
    request = forward(method='POST', uri='/a%20b', query='x=1',
                      headers=[('Content-Type', 'text/plain'), ('Content-Length', '3'),
                               ('X-Custom', 'v'), ('Cookie', 'a=1'), ('Cookie', 'b=2')],
                      is_ssl=True, server_port=8443,
                      attributes=[(0x03, wire.ajp_string('alice')),
                                  (0x0A, wire.ajp_string('AJP_REMOTE_PORT') + wire.ajp_string('5555')),
                                  (0x0B, struct.pack('>H', 256)),
                                  (0x0C, wire.ajp_string('s3cret'))])
    assert request.method == 'POST'
    assert request.request_uri == b'/a%20b'
    assert request.is_ssl
    assert request.attributes['ssl_key_size'] == 256
    params = forward_request_params(request)
    assert params['REQUEST_METHOD'] == 'POST'
    assert params['QUERY_STRING'] == 'x=1'
    assert params['REQUEST_URI'] == '/a%20b?x=1'
    assert params['CONTENT_TYPE'] == 'text/plain'
    assert params['CONTENT_LENGTH'] == '3'
    assert params['HTTP_X_CUSTOM'] == 'v'
    assert params['HTTP_COOKIE'] == 'a=1; b=2'
    assert params['HTTPS'] == 'on'
    assert params['SERVER_PORT'] == '8443'
    assert params['REMOTE_USER'] == 'alice'
    assert params['REMOTE_PORT'] == '5555'
    assert params['SSL_CIPHER_USEKEYSIZE'] == '256'
    assert 's3cret' not in params.values()


def test_forward_request_stored_method():
    packet = wire.ajp_forward_request(attributes=[(0x0D, wire.ajp_string('PATCH'))])
    payload = payloads(packet)[0][0]
    payload = payload[:1] + b'\xff' + payload[2:]
    assert ajp.decode_forward_request(payload).method == 'PATCH'


def test_forward_request_missing_uri_is_empty():
    payload = payloads(wire.ajp_forward_request(uri='/x'))[0][0]
    payload = payload.replace(b'\x00\x02/x\x00', b'\xff\xff')
    assert ajp.decode_forward_request(payload).request_uri == b''


def _truncations():
    payload = payloads(wire.ajp_forward_request(headers=[('X-A', 'b')]))[0][0]
    return [payload[:n] for n in range(1, len(payload))]


@pytest.mark.parametrize('payload', _truncations())
def test_forward_request_truncated_raises_protocol_error(payload):
    with pytest.raises(ajp.ProtocolError):
        ajp.decode_forward_request(payload)


@pytest.mark.parametrize('mutate, message', [
    (lambda p: p[:1] + b'\x63' + p[2:], 'unknown method code'),
    (lambda p: p[:-1] + b'\x42', 'unknown request attribute'),
    (lambda p: p.replace(b'HTTP/1.1\x00', b'HTTP/1.1!'), 'not NUL-terminated'),
])
def test_forward_request_invalid(mutate, message):
    payload = payloads(wire.ajp_forward_request())[0][0]
    with pytest.raises(ajp.ProtocolError) as info:
        ajp.decode_forward_request(mutate(payload))
    assert message in str(info.value)


def test_body_chunk_length_mismatch():
    with pytest.raises(ajp.ProtocolError):
        ajp.decode_body_chunk(struct.pack('>H', 10) + b'abc')


def test_encoders_frame_and_split():
    head = ajp.encode_send_headers(404, b'Not Found', [(b'Content-Type', b'text/plain'),
                                                        (b'X-Other', b'1')])
    assert head[:2] == b'AB'
    assert struct.unpack('>H', head[2:4])[0] == len(head) - 4
    body = ajp.encode_body_chunks(b'x' * (ajp.MAX_SEND_CHUNK * 2 + 5))
    sizes = []
    position = 0
    while position < len(body):
        length = struct.unpack('>H', body[position + 2:position + 4])[0]
        assert length + 4 <= ajp.MAX_PACKET_SIZE
        sizes.append(struct.unpack('>H', body[position + 5:position + 7])[0])
        position += 4 + length
    assert sizes == [ajp.MAX_SEND_CHUNK, ajp.MAX_SEND_CHUNK, 5]
    assert ajp.encode_body_chunks(b'') == b''
    assert ajp.encode_end_response(True)[-1:] == b'\x01'
    assert ajp.encode_get_body_chunk(10 ** 6)[-2:] == struct.pack('>H', ajp.MAX_READ_CHUNK)
