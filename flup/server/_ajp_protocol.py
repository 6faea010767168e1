"""AJP 1.3 codec: packets and messages in and out, no I/O.

This follows the Apache JServ Protocol version 1.3 as Apache Tomcat's
"AJPv13" description and Apache httpd's mod_proxy_ajp implement it.
Every packet has a 4-byte header: the magic ``0x12 0x34`` from the web
server or ``'AB'`` from the container, then the payload length as a
big-endian 16-bit integer.  Strings are a 16-bit length, the bytes and a
NUL; the length 0xFFFF stands for a missing string.

The web server sends FORWARD_REQUEST (2), SHUTDOWN (7), PING (8) and
CPING (10) messages, and request body packets, whose payload is a 16-bit
length and that many bytes, the length 0 marking the end of the body.
The container responds with SEND_BODY_CHUNK (3), SEND_HEADERS (4),
END_RESPONSE (5), GET_BODY_CHUNK (6) and CPONG_REPLY (9).

Invalid input raises :class:`ProtocolError`.
"""

from __future__ import absolute_import

import struct

from flup._compat import indexbytes, int2byte, to_native

SERVER_MAGIC = b'\x12\x34'
CONTAINER_MAGIC = b'AB'
HEADER_SIZE = 4

# Default packet size of mod_proxy_ajp and Tomcat (ProxyIOBufferSize,
# packetSize), header included.  Packets the container sends stay within it.
MAX_PACKET_SIZE = 8192
# Body bytes per SEND_BODY_CHUNK: the packet less its header, the type
# byte, the chunk length and the trailing NUL.
MAX_SEND_CHUNK = MAX_PACKET_SIZE - HEADER_SIZE - 4
# Body bytes the container may ask for with GET_BODY_CHUNK: a body packet
# less its header and the 16-bit length.
MAX_READ_CHUNK = MAX_PACKET_SIZE - HEADER_SIZE - 2

# Message types.
FORWARD_REQUEST = 2
SEND_BODY_CHUNK = 3
SEND_HEADERS = 4
END_RESPONSE = 5
GET_BODY_CHUNK = 6
SHUTDOWN = 7
PING = 8
CPONG_REPLY = 9
CPING = 10

METHODS = {
    1: 'OPTIONS', 2: 'GET', 3: 'HEAD', 4: 'POST', 5: 'PUT', 6: 'DELETE',
    7: 'TRACE', 8: 'PROPFIND', 9: 'PROPPATCH', 10: 'MKCOL', 11: 'COPY',
    12: 'MOVE', 13: 'LOCK', 14: 'UNLOCK', 15: 'ACL', 16: 'REPORT',
    17: 'VERSION-CONTROL', 18: 'CHECKIN', 19: 'CHECKOUT', 20: 'UNCHECKOUT',
    21: 'SEARCH', 22: 'MKWORKSPACE', 23: 'UPDATE', 24: 'LABEL', 25: 'MERGE',
    26: 'BASELINE-CONTROL', 27: 'MKACTIVITY',
}
# The method code meaning "the method is in the stored_method attribute".
METHOD_IN_ATTRIBUTE = 0xFF

# Request header names sent as the codes 0xA001 onwards.
REQUEST_HEADERS = (
    'accept', 'accept-charset', 'accept-encoding', 'accept-language',
    'authorization', 'connection', 'content-type', 'content-length',
    'cookie', 'cookie2', 'host', 'pragma', 'referer', 'user-agent',
)
# Response header names that may be sent as the codes 0xA001 onwards.
RESPONSE_HEADERS = (
    'content-type', 'content-language', 'content-length', 'date',
    'last-modified', 'location', 'set-cookie', 'set-cookie2',
    'servlet-engine', 'status', 'www-authenticate',
)
_RESPONSE_HEADER_CODES = dict(
    (name, 0xA001 + index) for index, name in enumerate(RESPONSE_HEADERS))

# Request attribute codes.
ATTRIBUTE_NAMES = {
    0x01: 'context', 0x02: 'servlet_path', 0x03: 'remote_user',
    0x04: 'auth_type', 0x05: 'query_string', 0x06: 'route',
    0x07: 'ssl_cert', 0x08: 'ssl_cipher', 0x09: 'ssl_session',
    0x0A: 'req_attribute', 0x0B: 'ssl_key_size', 0x0C: 'secret',
    0x0D: 'stored_method',
}
ATTRIBUTE_END = 0xFF
_REQ_ATTRIBUTE = 0x0A
_SSL_KEY_SIZE = 0x0B  # the only attribute sent as an integer


class ProtocolError(Exception):
    """The web server sent bytes that break AJP 1.3."""

    status = '400 Bad Request'


class ForwardRequest(object):
    """A decoded FORWARD_REQUEST message.

    Strings are bytes except ``method`` (a native str); ``remote_host``
    may be None.  ``headers`` is a list of ``(lower-case name, value)``
    byte pairs.  ``attributes`` maps attribute names to bytes, or to an
    integer for ``ssl_key_size``.  ``request_attributes`` is the list of
    ``req_attribute`` name and value byte pairs.
    """

    def __init__(self):
        self.method = None
        self.protocol = None
        self.request_uri = None
        self.remote_addr = None
        self.remote_host = None
        self.server_name = None
        self.server_port = None
        self.is_ssl = False
        self.headers = []
        self.attributes = {}
        self.request_attributes = []


class PacketParser(object):
    """Split the bytes from the web server into packet payloads.

    ``feed(data)`` buffers bytes; ``next_payload()`` returns the next
    complete payload or None.  A wrong magic raises ProtocolError.
    """

    def __init__(self):
        self._buffer = b''

    @property
    def partial(self):
        """True while part of a packet is buffered."""
        return bool(self._buffer)

    def feed(self, data):
        self._buffer += data

    def next_payload(self):
        if len(self._buffer) < HEADER_SIZE:
            if self._buffer and not SERVER_MAGIC.startswith(self._buffer[:2]):
                raise ProtocolError('invalid packet magic %r'
                                    % self._buffer[:2])
            return None
        if self._buffer[:2] != SERVER_MAGIC:
            raise ProtocolError('invalid packet magic %r' % self._buffer[:2])
        length = struct.unpack('>H', self._buffer[2:4])[0]
        end = HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        payload = self._buffer[HEADER_SIZE:end]
        self._buffer = self._buffer[end:]
        return payload


class _Reader(object):
    """Read AJP types from a payload, raising ProtocolError when short."""

    def __init__(self, payload, position=0):
        self._data = payload
        self._pos = position

    def byte(self):
        if self._pos >= len(self._data):
            raise ProtocolError('message ends early, at byte %d' % self._pos)
        value = indexbytes(self._data, self._pos)
        self._pos += 1
        return value

    def peek_byte(self):
        if self._pos >= len(self._data):
            raise ProtocolError('message ends early, at byte %d' % self._pos)
        return indexbytes(self._data, self._pos)

    def integer(self):
        if self._pos + 2 > len(self._data):
            raise ProtocolError('message ends early, at byte %d' % self._pos)
        value = struct.unpack('>H', self._data[self._pos:self._pos + 2])[0]
        self._pos += 2
        return value

    def string(self):
        length = self.integer()
        if length == 0xFFFF:
            return None
        end = self._pos + length
        if end + 1 > len(self._data):
            raise ProtocolError('string of %d bytes runs past the end of the '
                                'message' % length)
        if indexbytes(self._data, end) != 0:
            raise ProtocolError('string of %d bytes is not NUL-terminated'
                                % length)
        value = self._data[self._pos:end]
        self._pos = end + 1
        return value

    def required_string(self, what):
        value = self.string()
        if value is None:
            raise ProtocolError('%s is missing' % what)
        return value


def message_type(payload):
    """Return the type byte of a message payload."""
    if not payload:
        raise ProtocolError('empty message')
    return indexbytes(payload, 0)


def decode_forward_request(payload):
    """Decode a FORWARD_REQUEST payload into a :class:`ForwardRequest`."""
    reader = _Reader(payload)
    if reader.byte() != FORWARD_REQUEST:
        raise ProtocolError('not a FORWARD_REQUEST message')
    request = ForwardRequest()
    method_code = reader.byte()
    request.protocol = reader.required_string('the protocol')
    # lighttpd 1.4's mod_ajp13 sends a missing (0xFFFF) URI for requests at
    # the root of an "ajp13.server" prefix with fix-root-scriptname.
    request.request_uri = reader.string() or b''
    request.remote_addr = reader.string() or b''
    request.remote_host = reader.string()
    request.server_name = reader.string() or b''
    request.server_port = reader.integer()
    request.is_ssl = reader.byte() != 0
    for _ in range(reader.integer()):
        request.headers.append(_decode_header(reader))
    _decode_attributes(reader, request)
    if method_code == METHOD_IN_ATTRIBUTE:
        stored = request.attributes.get('stored_method')
        if not stored:
            raise ProtocolError('method code 0xFF without a stored_method '
                                'attribute')
        request.method = to_native(stored)
    elif method_code in METHODS:
        request.method = METHODS[method_code]
    else:
        raise ProtocolError('unknown method code %d' % method_code)
    return request


def _decode_header(reader):
    if reader.peek_byte() == 0xA0:
        code = reader.integer()
        index = code - 0xA001
        if not 0 <= index < len(REQUEST_HEADERS):
            raise ProtocolError('unknown request header code 0x%04X' % code)
        name = REQUEST_HEADERS[index].encode('ascii')
    else:
        name = reader.required_string('a header name').lower()
    value = reader.string()
    return name, value if value is not None else b''


def _decode_attributes(reader, request):
    while True:
        code = reader.byte()
        if code == ATTRIBUTE_END:
            return
        if code == _REQ_ATTRIBUTE:
            name = reader.required_string('a request attribute name')
            value = reader.string() or b''
            request.request_attributes.append((name, value))
        elif code == _SSL_KEY_SIZE:
            request.attributes['ssl_key_size'] = reader.integer()
        elif code in ATTRIBUTE_NAMES:
            request.attributes[ATTRIBUTE_NAMES[code]] = reader.string() or b''
        else:
            raise ProtocolError('unknown request attribute code 0x%02X' % code)


def decode_body_chunk(payload):
    """Return the bytes of a request body packet; b'' marks the end.

    NOTE: lighttpd 1.4.69's mod_ajp13 sends body packets without the 16-bit
    length, so its request bodies are rejected here with ProtocolError
    rather than guessed at.
    """
    if not payload:
        return b''
    reader = _Reader(payload)
    length = reader.integer()
    if length != len(payload) - 2:
        raise ProtocolError('body chunk says %d bytes but carries %d'
                            % (length, len(payload) - 2))
    return payload[2:]


# Encoding.

def encode_packet(payload):
    """Frame a container message payload as a packet."""
    if len(payload) > 0xFFFF:
        raise ValueError('AJP payload of %d bytes is too long' % len(payload))
    return CONTAINER_MAGIC + struct.pack('>H', len(payload)) + payload


def encode_string(value):
    """Encode bytes as an AJP string; None becomes the missing string."""
    if value is None:
        return b'\xff\xff'
    return struct.pack('>H', len(value)) + value + b'\x00'


def encode_send_headers(status_code, reason, headers):
    """Return the SEND_HEADERS packet.

    ``reason`` is bytes; ``headers`` a list of ``(name, value)`` byte pairs.
    """
    parts = [int2byte(SEND_HEADERS), struct.pack('>H', status_code),
             encode_string(reason), struct.pack('>H', len(headers))]
    for name, value in headers:
        code = _RESPONSE_HEADER_CODES.get(name.lower().decode('latin-1'))
        if code is not None:
            parts.append(struct.pack('>H', code))
        else:
            parts.append(encode_string(name))
        parts.append(encode_string(value))
    return encode_packet(b''.join(parts))


def encode_body_chunks(data):
    """Return SEND_BODY_CHUNK packets carrying ``data``; none for b''."""
    packets = []
    for start in range(0, len(data), MAX_SEND_CHUNK):
        chunk = data[start:start + MAX_SEND_CHUNK]
        packets.append(encode_packet(
            int2byte(SEND_BODY_CHUNK) + struct.pack('>H', len(chunk)) + chunk
            + b'\x00'))
    return b''.join(packets)


def encode_end_response(reuse):
    """Return the END_RESPONSE packet; ``reuse`` keeps the connection."""
    return encode_packet(int2byte(END_RESPONSE) + int2byte(1 if reuse else 0))


def encode_get_body_chunk(size):
    """Return the GET_BODY_CHUNK packet asking for up to ``size`` bytes."""
    size = max(0, min(size, MAX_READ_CHUNK))
    return encode_packet(int2byte(GET_BODY_CHUNK) + struct.pack('>H', size))


def encode_cpong():
    return encode_packet(int2byte(CPONG_REPLY))
