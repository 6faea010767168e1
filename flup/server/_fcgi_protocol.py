"""FastCGI 1.0 records and request state, with no I/O.

This module turns bytes from the web server into records and events, and
events from the application back into bytes.  It opens no socket, starts no
thread and logs nothing, so it can be tested by feeding it bytes.  Section
numbers refer to the FastCGI Specification 1.0 (Open Market, 1996).

The connection drivers in ``fcgi_base`` read from a socket, call
:meth:`ServerConnectionState.receive_data` and act on the events it returns.
"""

from __future__ import absolute_import

import collections
import struct

from flup._compat import indexbytes

# Section 8: record types, roles, flags and protocol status values.
FCGI_LISTENSOCK_FILENO = 0
FCGI_HEADER_LEN = 8
FCGI_VERSION_1 = 1

FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_DATA = 8
FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11
FCGI_MAXTYPE = FCGI_UNKNOWN_TYPE

FCGI_NULL_REQUEST_ID = 0

FCGI_KEEP_CONN = 1

FCGI_RESPONDER = 1
FCGI_AUTHORIZER = 2
FCGI_FILTER = 3

FCGI_REQUEST_COMPLETE = 0
FCGI_CANT_MPX_CONN = 1
FCGI_OVERLOADED = 2
FCGI_UNKNOWN_ROLE = 3

FCGI_MAX_CONNS = 'FCGI_MAX_CONNS'
FCGI_MAX_REQS = 'FCGI_MAX_REQS'
FCGI_MPXS_CONNS = 'FCGI_MPXS_CONNS'

# The content length field is 16 bits wide (section 3.3).
MAX_CONTENT_LENGTH = 65535

# Limits on what one request may send.  They exist so that a broken or
# hostile peer cannot make the server buffer without bound; each is far above
# what a web server forwards with its default settings.
#
# Apache httpd forwards at most 100 header fields of at most 8190 bytes each
# (LimitRequestFields, LimitRequestFieldSize), about 800 KiB, and nginx's
# default large_client_header_buffers (4 x 8 KiB) allow much less, so 1 MiB
# of PARAMS covers both with the server variables added.
MAX_PARAMS_BYTES = 1024 * 1024
# A parameter name is an HTTP header name with an ``HTTP_`` prefix or a CGI
# variable name; 8190 bytes is Apache's limit for a whole header line.
MAX_NAME_LENGTH = 8192
# A value may be a long cookie or query string; 256 KiB is 32 times nginx's
# default header buffer and leaves room for raised limits.
MAX_VALUE_LENGTH = 256 * 1024
# Requests open at once on one multiplexed connection.  Request ids are
# 16 bits wide, but no web server needs more than a few hundred at once, and
# each open request may hold a thread.
MAX_REQUESTS_PER_CONNECTION = 256

_HEADER = struct.Struct('!BBHHBx')
_BEGIN_REQUEST_BODY = struct.Struct('!HB5x')
_END_REQUEST_BODY = struct.Struct('!LB3x')
_UNKNOWN_TYPE_BODY = struct.Struct('!B7x')
_LONG_LENGTH = struct.Struct('!L')

# Types a web server may send on a request id other than 0 (section 3.3).
_APPLICATION_INPUT_TYPES = frozenset([
    FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_DATA,
])
_KNOWN_ROLES = frozenset([FCGI_RESPONDER, FCGI_AUTHORIZER, FCGI_FILTER])


class ProtocolError(Exception):
    """The peer sent bytes that break the FastCGI protocol.

    The connection that received them cannot be trusted any more and must be
    closed.  ``request_id`` names the request concerned, or is 0 when the
    error concerns the connection as a whole.
    """

    def __init__(self, message, request_id=FCGI_NULL_REQUEST_ID):
        Exception.__init__(self, message)
        self.request_id = request_id


RawRecord = collections.namedtuple(
    'RawRecord', 'type request_id content')


# Events returned by ServerConnectionState.receive_data.
GetValues = collections.namedtuple('GetValues', 'names')
UnknownType = collections.namedtuple('UnknownType', 'record_type')
# The web server began a request that this side will not serve;
# protocol_status says why (FCGI_UNKNOWN_ROLE, FCGI_CANT_MPX_CONN or
# FCGI_OVERLOADED).  The driver sends FCGI_END_REQUEST with it, and closes
# the connection afterwards unless ``keep_conn`` (FCGI_KEEP_CONN) is set.
RequestRejected = collections.namedtuple(
    'RequestRejected', 'request_id protocol_status reason keep_conn')
# All PARAMS arrived: the request can start.  ``params`` is a list of
# (name, value) byte-string pairs in the order received.
RequestStarted = collections.namedtuple(
    'RequestStarted', 'request_id role keep_conn params')
# A chunk of the FCGI_STDIN or FCGI_DATA stream; ``data`` is b'' at the end.
StdinReceived = collections.namedtuple('StdinReceived', 'request_id data')
DataReceived = collections.namedtuple('DataReceived', 'request_id data')
RequestAborted = collections.namedtuple('RequestAborted', 'request_id')


def encode_record(record_type, request_id, content=b''):
    # type: (int, int, bytes) -> bytes
    """Encode one record, padding its content to a multiple of 8 bytes."""
    length = len(content)
    if length > MAX_CONTENT_LENGTH:
        raise ValueError(
            'record content is %d bytes; the maximum is %d'
            % (length, MAX_CONTENT_LENGTH))
    padding = -length & 7
    header = _HEADER.pack(
        FCGI_VERSION_1, record_type, request_id, length, padding)
    return header + content + b'\x00' * padding


def encode_stream(record_type, request_id, data, max_content=8192):
    # type: (int, int, bytes, int) -> bytes
    """Encode ``data`` as stream records of at most ``max_content`` bytes.

    Empty ``data`` gives the empty record that closes a stream (section 3.3).
    ``max_content`` above 65535 is lowered to it.
    """
    if not data:
        return encode_record(record_type, request_id)
    step = max(1, min(int(max_content), MAX_CONTENT_LENGTH))
    if len(data) <= step:
        return encode_record(record_type, request_id, data)
    view = memoryview(data)
    parts = [
        encode_record(record_type, request_id, view[start:start + step].tobytes())
        for start in range(0, len(data), step)
    ]
    return b''.join(parts)


def encode_end_request(request_id, app_status=0,
                       protocol_status=FCGI_REQUEST_COMPLETE):
    # type: (int, int, int) -> bytes
    """Encode FCGI_END_REQUEST; ``app_status`` is taken modulo 2**32."""
    body = _END_REQUEST_BODY.pack(app_status & 0xffffffff, protocol_status)
    return encode_record(FCGI_END_REQUEST, request_id, body)


def encode_unknown_type(record_type):
    # type: (int) -> bytes
    return encode_record(
        FCGI_UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID,
        _UNKNOWN_TYPE_BODY.pack(record_type))


def encode_begin_request(request_id, role=FCGI_RESPONDER, flags=0):
    # type: (int, int, int) -> bytes
    """Encode FCGI_BEGIN_REQUEST, as a web server (or FCGIApp) sends it."""
    return encode_record(
        FCGI_BEGIN_REQUEST, request_id, _BEGIN_REQUEST_BODY.pack(role, flags))


def _encode_length(length):
    if length < 128:
        return struct.pack('!B', length)
    if length > 0x7fffffff:
        raise ValueError('name or value of %d bytes is too long to encode'
                         % length)
    return _LONG_LENGTH.pack(length | 0x80000000)


def encode_pair(name, value):
    # type: (bytes, bytes) -> bytes
    """Encode one name-value pair with 1- or 4-byte lengths (section 3.4)."""
    return _encode_length(len(name)) + _encode_length(len(value)) + name + value


def encode_pairs(pairs):
    """Encode an iterable of (name, value) byte-string pairs."""
    return b''.join(encode_pair(name, value) for name, value in pairs)


def _decode_length(data, pos):
    if pos >= len(data):
        raise ProtocolError('name-value pair truncated in its length field')
    first = indexbytes(data, pos)
    if first < 128:
        return first, pos + 1
    if pos + 4 > len(data):
        raise ProtocolError('name-value pair truncated in a 4-byte length')
    return _LONG_LENGTH.unpack_from(data, pos)[0] & 0x7fffffff, pos + 4


def decode_pair(data, pos=0):
    # type: (bytes, int) -> tuple
    """Decode the pair at ``pos``; return ``(next_pos, (name, value))``.

    Raise ProtocolError when a length runs past the end of ``data``.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    name_length, pos = _decode_length(data, pos)
    value_length, pos = _decode_length(data, pos)
    end = pos + name_length + value_length
    if end > len(data):
        raise ProtocolError(
            'name-value pair needs %d bytes but only %d remain'
            % (name_length + value_length, len(data) - pos))
    name = data[pos:pos + name_length]
    value = data[pos + name_length:end]
    return end, (name, value)


def decode_pairs(data, max_name=MAX_NAME_LENGTH, max_value=MAX_VALUE_LENGTH):
    """Decode a whole block of pairs into a list, checking length limits."""
    if isinstance(data, memoryview):
        data = data.tobytes()
    pairs = []
    pos = 0
    while pos < len(data):
        pos, (name, value) = decode_pair(data, pos)
        if len(name) > max_name:
            raise ProtocolError(
                'parameter name of %d bytes exceeds the limit of %d'
                % (len(name), max_name))
        if len(value) > max_value:
            raise ProtocolError(
                'value of parameter %r is %d bytes, over the limit of %d'
                % (name[:64], len(value), max_value))
        pairs.append((name, value))
    return pairs


class RecordParser(object):
    """Split a byte stream into records, however the bytes are chunked."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data):
        self._buffer.extend(data)

    @property
    def has_partial_record(self):
        """True while bytes of an incomplete record are buffered."""
        return bool(self._buffer)

    def next_record(self):
        """Return the next complete RawRecord, or None until more bytes arrive.

        Raise ProtocolError for a version other than 1.
        """
        buffer = self._buffer
        if len(buffer) < FCGI_HEADER_LEN:
            return None
        version, record_type, request_id, length, padding = (
            _HEADER.unpack_from(buffer, 0))
        if version != FCGI_VERSION_1:
            raise ProtocolError(
                'unsupported FastCGI version %d (expected 1)' % version)
        total = FCGI_HEADER_LEN + length + padding
        if len(buffer) < total:
            return None
        content = bytes(buffer[FCGI_HEADER_LEN:FCGI_HEADER_LEN + length])
        del buffer[:total]
        return RawRecord(record_type, request_id, content)


def decode_records(data):
    """Decode a complete byte string into a list of RawRecord.

    Raise ProtocolError for trailing bytes that do not form a whole record.
    """
    parser = RecordParser()
    parser.feed(data)
    records = []
    while True:
        record = parser.next_record()
        if record is None:
            break
        records.append(record)
    if parser.has_partial_record:
        raise ProtocolError('stream ends inside a record')
    return records


# Per-request input states (section 6): PARAMS arrive first, then STDIN,
# then DATA for the FILTER role.  COMPLETE means every input stream ended.
PARAMS = 'PARAMS'
STDIN = 'STDIN'
DATA = 'DATA'
COMPLETE = 'COMPLETE'


class _RequestInput(object):
    __slots__ = ('role', 'keep_conn', 'state', 'params', 'params_size')

    def __init__(self, role, keep_conn):
        self.role = role
        self.keep_conn = keep_conn
        self.state = PARAMS
        self.params = []
        self.params_size = 0


class ServerConnectionState(object):
    """The application side of one FastCGI connection, without I/O.

    ``receive_data`` takes bytes read from the web server and returns the
    events they complete.  The driver must call ``request_ended`` once it has
    sent FCGI_END_REQUEST for a request, so that its id can be used again.

    ``multiplexed`` says whether several requests may be open at once; when
    False a second request is rejected with FCGI_CANT_MPX_CONN.  ``roles`` is
    the set of roles served; other roles are rejected with
    FCGI_UNKNOWN_ROLE.
    """

    def __init__(self, multiplexed=False, roles=(FCGI_RESPONDER,),
                 max_params_bytes=MAX_PARAMS_BYTES,
                 max_requests=MAX_REQUESTS_PER_CONNECTION):
        self.multiplexed = multiplexed
        self.roles = frozenset(roles)
        self.max_params_bytes = max_params_bytes
        self.max_requests = max_requests
        self._parser = RecordParser()
        self._requests = {}
        # PARAMS bytes buffered for all requests whose PARAMS have not
        # ended.  max_params_bytes bounds it too, so that a multiplexed
        # connection cannot hold max_requests times that much.
        self._pending_params_bytes = 0

    @property
    def open_request_ids(self):
        return list(self._requests)

    @property
    def awaiting_input(self):
        """True while a record or a request's input stream is incomplete.

        A connection in this state is waiting for the web server in the
        middle of something, so a read timeout applies to it.
        """
        if self._parser.has_partial_record:
            return True
        return any(request.state != COMPLETE
                   for request in self._requests.values())

    @property
    def receiving_head(self):
        """True while a request's FCGI_BEGIN_REQUEST or PARAMS is incomplete.

        That is a request in its PARAMS stream, or a partial record while
        no request is open, which can only begin one.
        """
        if any(request.state == PARAMS for request in self._requests.values()):
            return True
        return self._parser.has_partial_record and not self._requests

    def request_ended(self, request_id):
        request = self._requests.pop(request_id, None)
        if request is not None and request.state == PARAMS:
            self._pending_params_bytes -= request.params_size

    def receive_data(self, data):
        """Feed bytes from the web server; return the list of new events.

        Raise ProtocolError when the bytes break the protocol; the caller
        must then close the connection.
        """
        self._parser.feed(data)
        events = []
        while True:
            record = self._parser.next_record()
            if record is None:
                return events
            self._receive_record(record, events)

    def _receive_record(self, record, events):
        if record.request_id == FCGI_NULL_REQUEST_ID:
            self._receive_management(record, events)
            return
        if record.type not in _APPLICATION_INPUT_TYPES:
            raise ProtocolError(
                'record type %d is not one a web server sends for a request'
                % record.type, record.request_id)
        if record.type == FCGI_BEGIN_REQUEST:
            self._begin_request(record, events)
            return
        request = self._requests.get(record.request_id)
        if request is None:
            # Section 3.3: records for a request id that is not active are
            # ignored.  They follow an abort or a rejected request.
            return
        if record.type == FCGI_ABORT_REQUEST:
            events.append(RequestAborted(record.request_id))
        elif record.type == FCGI_PARAMS:
            self._receive_params(record, request, events)
        elif record.type == FCGI_STDIN:
            self._receive_stream(record, request, STDIN, events)
        else:
            self._receive_stream(record, request, DATA, events)

    def _receive_management(self, record, events):
        if record.type == FCGI_GET_VALUES:
            pairs = decode_pairs(record.content)
            events.append(GetValues([name for name, _ in pairs]))
        else:
            events.append(UnknownType(record.type))

    def _begin_request(self, record, events):
        request_id = record.request_id
        if len(record.content) != _BEGIN_REQUEST_BODY.size:
            raise ProtocolError(
                'FCGI_BEGIN_REQUEST body is %d bytes (expected 8)'
                % len(record.content), request_id)
        if request_id in self._requests:
            raise ProtocolError(
                'FCGI_BEGIN_REQUEST for request %d, which is already open'
                % request_id, request_id)
        role, flags = _BEGIN_REQUEST_BODY.unpack(record.content)
        keep_conn = bool(flags & FCGI_KEEP_CONN)
        if role not in self.roles:
            events.append(RequestRejected(
                request_id, FCGI_UNKNOWN_ROLE,
                'role %d is not served' % role, keep_conn))
            return
        if self._requests and not self.multiplexed:
            events.append(RequestRejected(
                request_id, FCGI_CANT_MPX_CONN,
                'a request is already open and multiplexing is off',
                keep_conn))
            return
        if len(self._requests) >= self.max_requests:
            events.append(RequestRejected(
                request_id, FCGI_OVERLOADED,
                '%d requests are already open on this connection'
                % len(self._requests), keep_conn))
            return
        self._requests[request_id] = _RequestInput(role, keep_conn)

    def _receive_params(self, record, request, events):
        request_id = record.request_id
        if request.state != PARAMS:
            raise ProtocolError(
                'FCGI_PARAMS after the end of the PARAMS stream', request_id)
        if record.content:
            request.params_size += len(record.content)
            self._pending_params_bytes += len(record.content)
            if request.params_size > self.max_params_bytes:
                raise ProtocolError(
                    'PARAMS exceed the limit of %d bytes'
                    % self.max_params_bytes, request_id)
            if self._pending_params_bytes > self.max_params_bytes:
                raise ProtocolError(
                    'PARAMS still arriving for %d requests exceed the limit '
                    'of %d bytes per connection'
                    % (len(self._requests), self.max_params_bytes),
                    request_id)
            request.params.append(record.content)
            return
        self._pending_params_bytes -= request.params_size
        raw = b''.join(request.params)
        request.params = None
        try:
            pairs = decode_pairs(raw)
        except ProtocolError as error:
            error.request_id = request_id
            raise
        events.append(RequestStarted(
            request_id, request.role, request.keep_conn, pairs))
        if request.role == FCGI_AUTHORIZER:
            # Section 6.3: an Authorizer receives PARAMS only, so its input
            # is complete here.  Apache httpd's mod_authnz_fcgi sends no
            # STDIN; an empty STDIN record from another server is accepted.
            request.state = COMPLETE
            events.append(StdinReceived(request_id, b''))
        else:
            request.state = STDIN

    def _receive_stream(self, record, request, stream, events):
        request_id = record.request_id
        name = 'FCGI_STDIN' if stream == STDIN else 'FCGI_DATA'
        if (request.role == FCGI_AUTHORIZER and stream == STDIN
                and not record.content):
            return
        if request.state != stream:
            raise ProtocolError(
                '%s received while the request expects %s'
                % (name, _expected_stream(request.state)), request_id)
        event_type = StdinReceived if stream == STDIN else DataReceived
        events.append(event_type(request_id, record.content))
        if record.content:
            return
        if stream == STDIN and request.role == FCGI_FILTER:
            request.state = DATA
        else:
            request.state = COMPLETE


def _expected_stream(state):
    if state == PARAMS:
        return 'FCGI_PARAMS'
    if state == STDIN:
        return 'FCGI_STDIN'
    if state == DATA:
        return 'FCGI_DATA'
    return 'no more input'
