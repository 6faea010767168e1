"""SCGI codec: request headers in, response head out, no I/O.

An SCGI request (the SCGI protocol specification, version 1, by Neil
Schemenauer) is a netstring ``<length>:<headers>,`` followed by the body.
The headers are ``name NUL value NUL`` pairs.  The first must be
CONTENT_LENGTH, a decimal count of body bytes.  One must be ``SCGI`` with
the value ``1``, but this codec also accepts a request without it.  The
response is a CGI response, and the server closes the connection after it.

Everything here works on bytes and raises :class:`ProtocolError` for
invalid input, so it can be tested without sockets and used by both the
server and :mod:`flup.client.scgi_app`.
"""

from __future__ import absolute_import

import re

# The netstring length is a decimal number of at most this many digits.
MAX_LENGTH_DIGITS = 10
# Maximum size of the header netstring, in bytes.  nginx rejects HTTP
# request headers that do not fit in 4 buffers of 8 KiB by default
# (large_client_header_buffers), so 1 MiB leaves room for the headers of
# any usual web server setup while bounding memory.
MAX_HEADERS_LENGTH = 1 << 20

# \Z, because $ also matches before a trailing newline.
_DIGITS = re.compile(br'^[0-9]+\Z')
# Headers a request may contain once only.
_UNIQUE = (b'CONTENT_LENGTH', b'SCGI')


class ProtocolError(Exception):
    """The peer sent bytes that break the SCGI protocol.

    ``status`` is the HTTP status a server responds with.
    """

    status = '400 Bad Request'


class HeaderParser(object):
    """Collect bytes until the header netstring is complete.

    ``feed(data)`` returns False while more bytes are needed and True once
    the netstring is complete.  Then ``headers`` is the list of
    ``(name, value)`` byte pairs, ``content_length`` the body size and
    ``rest`` the bytes that followed the netstring (the start of the
    body).  Invalid input raises :class:`ProtocolError`.
    """

    def __init__(self, max_length=MAX_HEADERS_LENGTH):
        self._max_length = max_length
        self._buffer = b''
        self._length = None
        self.headers = None
        self.content_length = None
        self.rest = b''

    @property
    def started(self):
        """True once any byte has arrived."""
        return bool(self._buffer) or self.headers is not None

    def feed(self, data):
        if self.headers is not None:
            self.rest += data
            return True
        self._buffer += data
        if self._length is None:
            self._length = self._parse_length()
            if self._length is None:
                return False
        needed = self._length + 1  # the payload and its trailing comma
        if len(self._buffer) < needed:
            return False
        payload = self._buffer[:self._length]
        if self._buffer[self._length:needed] != b',':
            raise ProtocolError('the header netstring does not end with a '
                                'comma')
        self.rest = self._buffer[needed:]
        self._buffer = b''
        pairs = decode_headers(payload)
        self.content_length = check_headers(pairs)
        self.headers = pairs
        return True

    def _parse_length(self):
        colon = self._buffer.find(b':')
        if colon < 0:
            # Checked first, so that HTTP or binary input is named as such
            # rather than as an overlong length.
            if self._buffer and not _DIGITS.match(self._buffer):
                raise ProtocolError('the request does not start with a '
                                    'netstring length: %r' % self._buffer[:20])
            if len(self._buffer) > MAX_LENGTH_DIGITS:
                raise ProtocolError('the netstring length has more than %d '
                                    'digits' % MAX_LENGTH_DIGITS)
            return None
        digits = self._buffer[:colon]
        if not digits or not _DIGITS.match(digits):
            raise ProtocolError('invalid netstring length %r' % digits[:20])
        if len(digits) > MAX_LENGTH_DIGITS:
            raise ProtocolError('the netstring length has more than %d '
                                'digits' % MAX_LENGTH_DIGITS)
        if len(digits) > 1 and digits.startswith(b'0'):
            raise ProtocolError('netstring length %r has a leading zero'
                                % digits)
        length = int(digits)
        if length > self._max_length:
            raise ProtocolError('header netstring of %d bytes exceeds the '
                                'limit of %d' % (length, self._max_length))
        self._buffer = self._buffer[colon + 1:]
        return length


def decode_headers(payload):
    """Split a header netstring payload into ``(name, value)`` byte pairs."""
    if not payload:
        raise ProtocolError('the request has no headers')
    if not payload.endswith(b'\0'):
        raise ProtocolError('the last header value is not NUL-terminated')
    items = payload[:-1].split(b'\0')
    if len(items) % 2:
        raise ProtocolError('header %r has no value' % items[-1][:40])
    pairs = []
    for index in range(0, len(items), 2):
        name = items[index]
        if not name:
            raise ProtocolError('a header has an empty name')
        pairs.append((name, items[index + 1]))
    return pairs


def check_headers(pairs):
    """Check the headers SCGI requires and return CONTENT_LENGTH as an int."""
    first_name, first_value = pairs[0]
    if first_name != b'CONTENT_LENGTH':
        raise ProtocolError('the first header is %r, not CONTENT_LENGTH'
                            % first_name[:40])
    if not _DIGITS.match(first_value):
        raise ProtocolError('invalid CONTENT_LENGTH %r' % first_value[:40])
    seen = set()
    for name, value in pairs:
        if name in _UNIQUE and name in seen:
            raise ProtocolError('header %s appears twice' % name.decode('ascii'))
        seen.add(name)
        if name == b'SCGI' and value != b'1':
            raise ProtocolError('unsupported SCGI version %r' % value[:20])
    # The SCGI header is required by the specification, but nginx sends it
    # only when configured with "scgi_param SCGI 1", so a missing one is
    # accepted.
    return int(first_value)


def merge_headers(pairs):
    """Return a dict of the header pairs.

    SCGI forbids repeated names, but web servers pass repeated HTTP request
    headers through; they are joined as HTTP/1.1 joins them (cookies with
    ``; ``), and for any other name the last value wins.
    """
    merged = {}
    for name, value in pairs:
        if name in merged and name.startswith(b'HTTP_'):
            separator = b'; ' if name == b'HTTP_COOKIE' else b', '
            merged[name] = merged[name] + separator + value
        else:
            merged[name] = value
    return merged


def encode_netstring(data):
    """Return ``data`` (bytes) as a netstring."""
    return str(len(data)).encode('ascii') + b':' + data + b','


def encode_request_head(pairs, content_length):
    """Return the header netstring of a request.

    ``pairs`` are ``(name, value)`` byte pairs; CONTENT_LENGTH and SCGI
    are added first and must not be among them.
    """
    parts = [b'CONTENT_LENGTH\0', str(int(content_length)).encode('ascii'),
             b'\0SCGI\x001\0']
    for name, value in pairs:
        if name in _UNIQUE:
            raise ValueError('%r is added by encode_request_head' % name)
        if b'\0' in name or b'\0' in value:
            raise ValueError('header %r contains a NUL byte' % name)
        parts.append(name + b'\0' + value + b'\0')
    return encode_netstring(b''.join(parts))


def parse_response_head(data):
    """Split a CGI response into ``(status, headers, body)`` once its head
    is complete; return None while more bytes are needed.

    ``status`` is the bytes of the Status header (``b'200 OK'`` when it is
    missing, as CGI/1.1 specifies), ``headers`` a list of byte pairs
    without it.  Lines may end in CRLF or LF.
    """
    end = -1
    for separator in (b'\r\n\r\n', b'\n\n'):
        index = data.find(separator)
        if index >= 0 and (end < 0 or index < end):
            end, size = index, len(separator)
    if end < 0:
        return None
    head, body = data[:end], data[end + size:]
    status = b'200 OK'
    headers = []
    for line in head.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(b':')
        if not colon:
            raise ProtocolError('invalid response header line %r' % line[:80])
        name, value = name.strip(), value.strip()
        if name.lower() == b'status':
            status = value
        else:
            headers.append((name, value))
    return status, headers, body
