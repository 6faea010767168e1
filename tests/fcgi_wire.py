"""FastCGI 1.0 records for the test suite, written apart from the package.

Tests build the bytes a web server sends with these functions and decode what
the server returns with ``parse_records``, so a fault in the package's own
codec cannot hide itself by being on both sides of a test.  Nothing here
imports ``flup``.

The wire format is that of the FastCGI Specification 1.0 (Open Market,
1996).  A record (section 3.3) is an 8-byte header followed by the content
and then the padding.  The header fields are the version, the type, the
request id and content length in 16 bits each, the padding length and one
reserved byte.  Name-value pairs (section 3.4) carry each length in one byte
when it is below 128, otherwise in four bytes with the top bit set.

``Client`` talks to a server under test.  It only connects to loopback
addresses and Unix socket paths, and every wait in it has a deadline.
"""

from __future__ import absolute_import

import collections
import errno
import socket
import struct
import sys
import time

PY2 = sys.version_info[0] == 2

if PY2:
    text_type = unicode  # noqa: F821 (Python 2 only)
else:
    text_type = str

try:
    _monotonic = time.monotonic
except AttributeError:  # Python 2.7
    _monotonic = time.time

VERSION_1 = 1
HEADER_LEN = 8
MAX_CONTENT_LENGTH = 0xffff
# A 4-byte pair length has 31 bits for the value (section 3.4).
MAX_PAIR_LENGTH = 0x7fffffff
NULL_REQUEST_ID = 0

# Record types (section 8).
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

# Roles in FCGI_BEGIN_REQUEST.
RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

# The only flag of FCGI_BEGIN_REQUEST.
KEEP_CONN = 1

# protocolStatus values in FCGI_END_REQUEST.
REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

# Variable names an FCGI_GET_VALUES query may ask for.
MAX_CONNS = 'FCGI_MAX_CONNS'
MAX_REQS = 'FCGI_MAX_REQS'
MPXS_CONNS = 'FCGI_MPXS_CONNS'

TYPE_NAMES = {
    BEGIN_REQUEST: 'FCGI_BEGIN_REQUEST',
    ABORT_REQUEST: 'FCGI_ABORT_REQUEST',
    END_REQUEST: 'FCGI_END_REQUEST',
    PARAMS: 'FCGI_PARAMS',
    STDIN: 'FCGI_STDIN',
    STDOUT: 'FCGI_STDOUT',
    STDERR: 'FCGI_STDERR',
    DATA: 'FCGI_DATA',
    GET_VALUES: 'FCGI_GET_VALUES',
    GET_VALUES_RESULT: 'FCGI_GET_VALUES_RESULT',
    UNKNOWN_TYPE: 'FCGI_UNKNOWN_TYPE',
}

_HEADER = struct.Struct('>BBHHBB')
_BEGIN_BODY = struct.Struct('>HB5x')
_END_BODY = struct.Struct('>IB3x')
_UNKNOWN_TYPE_BODY = struct.Struct('>B7x')

# One decoded record.  ``content`` excludes the padding.
Rec = collections.namedtuple('Rec', 'type request_id content')


# ---------------------------------------------------------------------------
# Conversions

def to_bytes(value):
    """Convert a name or value to bytes.

    Text is encoded as UTF-8, as a browser sends a non-ASCII URL, and an int
    becomes its decimal digits.  Pass bytes for exact control.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, text_type):
        return value.encode('utf-8')
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode('ascii')
    raise TypeError('expected bytes, text or int, got %r' % (value,))


def to_native(data):
    """Decode bytes from the wire to a native string (latin-1, as PEP 3333)."""
    if PY2:
        return data
    return data.decode('latin-1')


def _items(items):
    if items is None:
        return []
    if hasattr(items, 'items'):
        items = items.items()
    return [(to_bytes(name), to_bytes(value)) for name, value in items]


# ---------------------------------------------------------------------------
# Encoding

def record(rtype, request_id, content=b'', padding=None, version=VERSION_1):
    """Encode one record.

    ``padding`` is the number of zero bytes after the content.  By default it
    rounds the record up to a multiple of 8 bytes, which the specification
    recommends but does not require, so tests may pass any value 0..255.
    """
    content = to_bytes(content)
    if len(content) > MAX_CONTENT_LENGTH:
        raise ValueError('record content of %d bytes exceeds the maximum of %d'
                         % (len(content), MAX_CONTENT_LENGTH))
    if padding is None:
        padding = -len(content) % 8
    header = _HEADER.pack(version, rtype, request_id, len(content), padding, 0)
    return header + content + b'\x00' * padding


def stream(rtype, request_id, body, chunk=MAX_CONTENT_LENGTH):
    """Encode ``body`` as stream records of at most ``chunk`` bytes.

    The empty record that ends the stream is included, so empty ``body``
    gives only that record.
    """
    body = to_bytes(body)
    if not 1 <= chunk <= MAX_CONTENT_LENGTH:
        raise ValueError('chunk must be 1..%d bytes, got %r'
                         % (MAX_CONTENT_LENGTH, chunk))
    parts = [record(rtype, request_id, body[start:start + chunk])
             for start in range(0, len(body), chunk)]
    parts.append(record(rtype, request_id))
    return b''.join(parts)


def encode_length(length, force_long=False):
    """Encode a pair length in 1 byte, or 4 bytes if long or forced.

    Lengths up to 2**31 - 1 are accepted without data to back them, so tests
    can claim lengths that the bytes that follow do not have.
    """
    if not 0 <= length <= MAX_PAIR_LENGTH:
        raise ValueError('pair length must be 0..%d, got %d'
                         % (MAX_PAIR_LENGTH, length))
    if length < 128 and not force_long:
        return struct.pack('>B', length)
    return struct.pack('>I', length | 0x80000000)


def pair(name, value, long_name=False, long_value=False):
    """Encode one name-value pair.  ``long_*`` force a 4-byte length."""
    name = to_bytes(name)
    value = to_bytes(value)
    return (encode_length(len(name), long_name)
            + encode_length(len(value), long_value) + name + value)


def pairs(items):
    """Encode a dict or a list of (name, value) pairs in order."""
    return b''.join(pair(name, value) for name, value in _items(items))


def begin(request_id=1, role=RESPONDER, keep_conn=False):
    """Encode FCGI_BEGIN_REQUEST."""
    flags = KEEP_CONN if keep_conn else 0
    return record(BEGIN_REQUEST, request_id, _BEGIN_BODY.pack(role, flags))


def params(request_id, items, chunk=None):
    """Encode the FCGI_PARAMS stream of ``items``, terminator included.

    With ``chunk`` the pair bytes are cut every ``chunk`` bytes, even inside
    a pair, which the specification allows.
    """
    return stream(PARAMS, request_id, pairs(items),
                  chunk or MAX_CONTENT_LENGTH)


def stdin(request_id, body, chunk=MAX_CONTENT_LENGTH):
    """Encode the FCGI_STDIN stream of ``body``, terminator included."""
    return stream(STDIN, request_id, body, chunk)


def data(request_id, body, chunk=MAX_CONTENT_LENGTH):
    """Encode the FCGI_DATA stream (FILTER role), terminator included."""
    return stream(DATA, request_id, body, chunk)


def abort(request_id):
    """Encode FCGI_ABORT_REQUEST."""
    return record(ABORT_REQUEST, request_id)


def get_values(names):
    """Encode an FCGI_GET_VALUES query, which sends the names with empty values."""
    return record(GET_VALUES, NULL_REQUEST_ID,
                  pairs([(name, b'') for name in names]))


# Records an application sends, for tests that stand in for a FastCGI
# application (for example behind ``flup.client.fcgi_app``).

def stdout(request_id, body, chunk=MAX_CONTENT_LENGTH):
    """Encode the FCGI_STDOUT stream of ``body``, terminator included."""
    return stream(STDOUT, request_id, body, chunk)


def stderr(request_id, body, chunk=MAX_CONTENT_LENGTH):
    """Encode the FCGI_STDERR stream of ``body``, terminator included."""
    return stream(STDERR, request_id, body, chunk)


def end_request(request_id, app_status=0, protocol_status=REQUEST_COMPLETE):
    """Encode FCGI_END_REQUEST."""
    return record(END_REQUEST, request_id,
                  _END_BODY.pack(app_status, protocol_status))


def get_values_result(items):
    """Encode FCGI_GET_VALUES_RESULT with the given (name, value) items."""
    return record(GET_VALUES_RESULT, NULL_REQUEST_ID, pairs(items))


def unknown_type(rtype):
    """Encode FCGI_UNKNOWN_TYPE naming the record type ``rtype``."""
    return record(UNKNOWN_TYPE, NULL_REQUEST_ID, _UNKNOWN_TYPE_BODY.pack(rtype))


def cgi_params(method='GET', path='/', query='', headers=None, body=b'',
               script_name='', extra=None):
    """Build the CGI variables nginx sends for one HTTP request.

    The set is that of the ``fastcgi_params`` file shipped with nginx, plus
    ``PATH_INFO``, and without ``HTTPS``, which nginx leaves out for plain
    HTTP.  ``path`` is the part below ``script_name`` and is
    used as given, without percent-encoding.  Each header in ``headers`` (a
    dict or a list of pairs) becomes ``HTTP_<NAME>``.  Content-Type and
    Content-Length also set ``CONTENT_TYPE`` and ``CONTENT_LENGTH``, which
    nginx sends empty when the request has no such header.  Without a
    Content-Length header, ``CONTENT_LENGTH`` is the length of ``body``.  A
    Host header of ``localhost`` is added when ``headers`` has none.
    ``extra`` is applied last, and a value of None there removes the
    variable.  Returns an ordered dict of native strings.
    """
    header_items = []
    if headers is not None:
        header_items = list(headers.items() if hasattr(headers, 'items')
                            else headers)
    header_names = [_native_text(name).lower() for name, _ in header_items]
    if 'host' not in header_names:
        header_items.insert(0, ('Host', 'localhost'))

    uri = script_name + path
    request_uri = uri + ('?' + query if query else '')
    environ = collections.OrderedDict([
        ('QUERY_STRING', query),
        ('REQUEST_METHOD', method),
        ('CONTENT_TYPE', ''),
        ('CONTENT_LENGTH', str(len(body)) if body else ''),
        ('SCRIPT_NAME', script_name),
        ('PATH_INFO', path),
        ('REQUEST_URI', request_uri),
        ('DOCUMENT_URI', uri),
        ('DOCUMENT_ROOT', '/var/www'),
        ('SERVER_PROTOCOL', 'HTTP/1.1'),
        ('REQUEST_SCHEME', 'http'),
        ('GATEWAY_INTERFACE', 'CGI/1.1'),
        ('SERVER_SOFTWARE', 'nginx/1.22.1'),
        ('REMOTE_ADDR', '127.0.0.1'),
        ('REMOTE_PORT', '54321'),
        ('SERVER_ADDR', '127.0.0.1'),
        ('SERVER_PORT', '80'),
        ('SERVER_NAME', 'localhost'),
        ('REDIRECT_STATUS', '200'),
    ])
    for name, value in header_items:
        name = _native_text(name)
        value = _native_text(value)
        key = name.upper().replace('-', '_')
        if key in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            environ[key] = value
        environ['HTTP_' + key] = value
    for name, value in (extra or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def _native_text(value):
    if isinstance(value, bytes) and not PY2:
        return value.decode('latin-1')
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


# ---------------------------------------------------------------------------
# Decoding

def _parse_one(data, pos):
    """Decode the record at ``pos`` into ``(record, end)``, or None if cut.

    Raise ValueError on a version other than 1, because the bytes after it
    cannot be framed.
    """
    if len(data) - pos < HEADER_LEN:
        return None
    version, rtype, request_id, length, padding, _ = _HEADER.unpack_from(
        data, pos)
    if version != VERSION_1:
        raise ValueError('record at offset %d has version %d, expected 1'
                         % (pos, version))
    start = pos + HEADER_LEN
    end = start + length + padding
    if end > len(data):
        return None
    return Rec(rtype, request_id, bytes(data[start:start + length])), end


def parse_records(data):
    """Split ``data`` into records and return ``(records, leftover_bytes)``.

    ``leftover_bytes`` is the start of an incomplete record, or b''.  Raise
    ValueError on a version other than 1.
    """
    data = bytes(data)
    records = []
    pos = 0
    # Each pass consumes at least a header, so len(data) passes suffice.
    for _ in range(len(data) // HEADER_LEN + 1):
        parsed = _parse_one(data, pos)
        if parsed is None:
            break
        rec, pos = parsed
        records.append(rec)
    return records, data[pos:]


def _decode_length(data, pos):
    if pos >= len(data):
        raise ValueError('pair truncated at offset %d: length missing' % pos)
    first = bytearray(data[pos:pos + 1])[0]
    if first < 128:
        return first, pos + 1
    if pos + 4 > len(data):
        raise ValueError('pair truncated at offset %d: 4-byte length cut short'
                         % pos)
    return struct.unpack('>I', data[pos:pos + 4])[0] & MAX_PAIR_LENGTH, pos + 4


def parse_pairs(content):
    """Decode name-value pairs into a list of (name, value) byte strings.

    Raise ValueError when a length runs past the end of ``content``.
    """
    content = bytes(content)
    result = []
    pos = 0
    while pos < len(content):
        name_length, pos = _decode_length(content, pos)
        value_length, pos = _decode_length(content, pos)
        end = pos + name_length + value_length
        if end > len(content):
            raise ValueError('pair needs %d bytes at offset %d, %d remain'
                             % (name_length + value_length, pos,
                                len(content) - pos))
        result.append((content[pos:pos + name_length],
                       content[pos + name_length:end]))
        pos = end
    return result


def parse_begin(content):
    """Decode an FCGI_BEGIN_REQUEST body into ``(role, flags)``."""
    return _BEGIN_BODY.unpack(content)


def parse_end_request(content):
    """Decode an FCGI_END_REQUEST body into ``(app_status, protocol_status)``."""
    return _END_BODY.unpack(content)


def parse_unknown_type(content):
    """Decode an FCGI_UNKNOWN_TYPE body into the record type it names."""
    return _UNKNOWN_TYPE_BODY.unpack(content)[0]


def split_cgi_response(stdout_bytes):
    """Split CGI output into ``(status, headers, body)``.

    ``headers`` is a list of (name, value) native strings in the order sent,
    ``Status`` included.  ``status`` is the number of the ``Status`` header,
    or 200 when there is none.  Output without a blank line is all body.
    """
    for separator in (b'\r\n\r\n', b'\n\n'):
        head, found, body = stdout_bytes.partition(separator)
        if found:
            break
    else:
        return 200, [], stdout_bytes
    headers = []
    status = 200
    for line in head.splitlines():
        name, _, value = to_native(line).partition(':')
        name = name.strip()
        value = value.strip()
        headers.append((name, value))
        if name.lower() == 'status':
            status = int(value.split()[0])
    return status, headers, body


class Response(object):
    """The records of one request, with its streams joined and decoded.

    ``app_status`` and ``protocol_status`` are None when no FCGI_END_REQUEST
    for the request arrived.
    """

    def __init__(self, request_id, records):
        self.request_id = request_id
        self.records = list(records)
        mine = [rec for rec in self.records if rec.request_id == request_id]
        self.stdout = b''.join(rec.content for rec in mine
                               if rec.type == STDOUT)
        self.stderr = b''.join(rec.content for rec in mine
                               if rec.type == STDERR)
        self.app_status = None
        self.protocol_status = None
        for rec in mine:
            if rec.type == END_REQUEST:
                self.app_status, self.protocol_status = parse_end_request(
                    rec.content)
        self.status, self.headers, self.body = split_cgi_response(self.stdout)

    def header(self, name, default=None):
        """Return the first value of header ``name`` (any case), or default."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    def __repr__(self):
        return ('<Response id=%d status=%d protocol_status=%r app_status=%r '
                'stdout=%d bytes stderr=%d bytes>'
                % (self.request_id, self.status, self.protocol_status,
                   self.app_status, len(self.stdout), len(self.stderr)))


# ---------------------------------------------------------------------------
# Client

class ReceiveTimeout(socket.timeout):
    """No expected record arrived in time.

    ``records`` contains the records that did arrive.
    """

    def __init__(self, message, records):
        socket.timeout.__init__(self, message)
        self.records = records


class PeerClosed(EOFError):
    """The server closed the connection before the expected record arrived."""

    def __init__(self, message, records):
        EOFError.__init__(self, message)
        self.records = records


def _check_local_address(address):
    """Raise ValueError unless ``address`` is a Unix path or loopback."""
    if isinstance(address, (str, text_type, bytes)):
        return socket.AF_UNIX
    host = address[0]
    if host == 'localhost' or host.startswith('127.'):
        family = socket.AF_INET
    elif host == '::1':
        family = socket.AF_INET6
    else:
        raise ValueError('test clients connect only to loopback or Unix '
                         'sockets, not %r' % (host,))
    if len(address) == 4:
        family = socket.AF_INET6
    return family


# Receive-loop bound on top of the deadline, so a peer sending one byte at a
# time cannot keep a test busy for long either.
_MAX_RECV_CALLS = 1000000


class Client(object):
    """A FastCGI connection to a server under test, acting as the web server.

    ``address`` is ``(host, port)``, ``(host6, port, flowinfo, scope_id)``
    or a Unix socket path; only loopback hosts are accepted.  ``timeout``
    (seconds) is the default deadline of each receive method.
    """

    def __init__(self, address, timeout=10.0):
        family = _check_local_address(address)
        self.address = address
        self.timeout = timeout
        self.eof = False
        self._buffer = bytearray()
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        except Exception:
            self.sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def send(self, data):
        """Send all of ``data``, raising socket.timeout if blocked past ``timeout``."""
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _recv_some(self, deadline):
        """Append the bytes of one recv to the buffer, or return False on timeout."""
        remaining = deadline - _monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except socket.error as error:
            if error.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
            chunk = b''
        if not chunk:
            self.eof = True
        self._buffer.extend(chunk)
        return True

    def _next_record(self):
        parsed = _parse_one(self._buffer, 0)
        if parsed is None:
            return None
        rec, end = parsed
        del self._buffer[:end]
        return rec

    def recv_records(self, until=None, timeout=None):
        """Receive records until ``until(record)`` is true for one of them.

        Return the records received, the matching one last.  Records after
        it stay buffered for the next call.  With ``until`` None, or when the
        server closes the connection first, return what arrived before the
        close and set ``eof``.  Raise ReceiveTimeout after ``timeout``
        seconds (default: the client's).
        """
        if timeout is None:
            timeout = self.timeout
        deadline = _monotonic() + timeout
        received = []
        for _ in range(_MAX_RECV_CALLS):
            record_ = self._next_record()
            while record_ is not None:
                received.append(record_)
                if until is not None and until(record_):
                    return received
                record_ = self._next_record()
            if self.eof:
                return received
            if not self._recv_some(deadline):
                raise ReceiveTimeout(
                    'no matching record within %.1f s; received %d records'
                    % (timeout, len(received)), received)
        raise ReceiveTimeout('receive loop exceeded %d calls'
                             % _MAX_RECV_CALLS, received)

    def request(self, params, body=b'', request_id=1, keep_conn=False,
                role=RESPONDER, data=None, timeout=None):
        """Send one whole request and return its Response.

        ``params`` is a dict or list of pairs, or None for
        ``cgi_params(body=body)``.  The FCGI_DATA stream is sent when
        ``data`` is given or the role is FILTER.  Raise PeerClosed if the
        server closes the connection before FCGI_END_REQUEST for
        ``request_id``, and ReceiveTimeout if it does not arrive in time.
        """
        if params is None:
            params = cgi_params(method='POST' if body else 'GET', body=body)
        message = (begin(request_id, role, keep_conn)
                   + _encode_params(request_id, params)
                   + stdin(request_id, body))
        if data is not None or role == FILTER:
            message += _encode_data(request_id, data or b'')
        self.send(message)
        records = self.recv_records(until=_end_of(request_id), timeout=timeout)
        if not records or records[-1].type != END_REQUEST or (
                records[-1].request_id != request_id):
            raise PeerClosed('connection closed before FCGI_END_REQUEST for '
                             'request %d' % request_id, records)
        return Response(request_id, records)

    def get_values(self, names, timeout=None):
        """Query FCGI_GET_VALUES and return the result as a dict of native str."""
        self.send(get_values(names))
        records = self.recv_records(
            until=lambda rec: rec.type == GET_VALUES_RESULT, timeout=timeout)
        if not records or records[-1].type != GET_VALUES_RESULT:
            raise PeerClosed('connection closed before '
                             'FCGI_GET_VALUES_RESULT', records)
        return dict((to_native(name), to_native(value))
                    for name, value in parse_pairs(records[-1].content))

    def closed_by_peer(self, timeout=5.0):
        """Return True if the server closes its side within ``timeout`` s.

        Bytes that arrive first are kept for ``recv_records``.  A reset
        counts as closed.
        """
        deadline = _monotonic() + timeout
        for _ in range(_MAX_RECV_CALLS):
            if self.eof:
                return True
            if not self._recv_some(deadline):
                return False
        return False

    def reset(self):
        """Close with SO_LINGER set to 0 s, so the server receives an RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack('ii', 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


# The names of Client.request's arguments hide these two functions.
_encode_params = params
_encode_data = data


def _end_of(request_id):
    def is_end(rec):
        return rec.type == END_REQUEST and rec.request_id == request_id
    return is_end
