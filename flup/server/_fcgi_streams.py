"""The FastCGI request streams: STDIN and DATA in, STDOUT and STDERR out."""

from __future__ import absolute_import

import threading

from flup._compat import PY2
from flup.server import ClientDisconnected
from flup.server._fcgi_protocol import encode_record, encode_stream
from flup.server._wsgi import LineReader

# A multiplexed request's input wait ends after this many read timeouts even
# if the connection has not noticed anything, so no wait is unbounded.
_INPUT_WAIT_FACTOR = 2


class InputStream(LineReader):
    """A request's STDIN (or DATA) stream, read by the application.

    The connection adds data with ``add_data``; ``add_data(b'')`` marks the
    end.  When a limit is set (CONTENT_LENGTH), reads stop there.  Once the
    request is aborted, reads raise :class:`ClientDisconnected`.

    This class serves connections that run one request at a time in their
    own thread: when it needs more input it asks the connection to read
    from the socket.
    """

    def __init__(self, conn):
        self._conn = conn
        self._buffer = bytearray()
        self._pos = 0
        self._eof = False
        self._error = None
        self._limit = None
        self._received = 0
        self._consumed = 0
        self._shrink_threshold = getattr(
            conn.server, 'inputStreamShrinkThreshold', 102400 - 8192)
        self._cond = threading.Condition(threading.Lock())

    # Connection side.

    def add_data(self, data):
        with self._cond:
            if data:
                if self._limit is not None:
                    # Bytes past the limit can never be read, so they are
                    # dropped, because a multiplexed reader would otherwise
                    # buffer everything a peer sends.
                    room = self._limit - self._received
                    data = data[:max(room, 0)]
                self._received += len(data)
                self._buffer.extend(data)
            else:
                self._eof = True
            self._cond.notify_all()

    def set_limit(self, length):
        """Stop reads after ``length`` bytes in total (CONTENT_LENGTH);
        later input past it is dropped."""
        self._limit = length

    def abort(self, reason):
        """Make pending and later reads raise ClientDisconnected(reason)."""
        with self._cond:
            if self._error is None:
                self._error = reason
            self._cond.notify_all()

    # Application side.

    def _available(self):
        return len(self._buffer) - self._pos

    def _remaining_allowed(self):
        if self._limit is None:
            return None
        return self._limit - self._consumed

    def _fill(self, wanted):
        """Wait until ``wanted`` bytes are buffered (None: until the end)."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise ClientDisconnected(self._error)
                if self._eof:
                    return
                if wanted is not None and self._available() >= wanted:
                    return
                self._wait_for_data()

    def _wait_for_data(self):
        # Called with the lock held.  Release it while the connection reads
        # the socket, which calls add_data from this same thread.
        self._cond.release()
        try:
            if not self._conn.process_input():
                self.abort('the web server closed the connection')
        finally:
            self._cond.acquire()

    def _take(self, size):
        with self._cond:
            available = self._available()
            if size is None or size > available:
                size = available
            data = bytes(self._buffer[self._pos:self._pos + size])
            self._pos += size
            self._consumed += size
            if self._pos > self._shrink_threshold:
                del self._buffer[:self._pos]
                self._pos = 0
            return data

    def _check_complete(self, data, size):
        # A body that ended before CONTENT_LENGTH bytes is an incomplete
        # request, not a short body.
        if self._limit is not None and self._eof and len(data) < (size or 0):
            if self._consumed < self._limit and self._available() == 0:
                raise ClientDisconnected(
                    'request body ended after %d of %d bytes'
                    % (self._consumed, self._limit))

    def read(self, size=-1):
        allowed = self._remaining_allowed()
        if size is None or size < 0:
            size = allowed
        elif allowed is not None:
            size = min(size, allowed)
        if size == 0:
            return b''
        self._fill(size)
        data = self._take(size)
        self._check_complete(data, size if size is not None else allowed)
        return data

    def readline(self, size=-1):
        allowed = self._remaining_allowed()
        if size is None or size < 0:
            size = allowed
        elif allowed is not None:
            size = min(size, allowed)
        if size == 0:
            return b''
        while True:
            with self._cond:
                end = self._buffer.find(b'\n', self._pos)
                available = self._available()
                if end >= 0:
                    wanted = end - self._pos + 1
                    break
                if size is not None and available >= size:
                    wanted = size
                    break
                if self._eof or self._error is not None:
                    wanted = available
                    if self._error is not None:
                        raise ClientDisconnected(self._error)
                    break
            self._fill(available + 1)
        if size is not None:
            wanted = min(wanted, size)
        data = self._take(wanted)
        if not data.endswith(b'\n'):
            self._check_complete(data, size)
        return data


class MultiplexedInputStream(InputStream):
    """An input stream fed by another thread: the connection's reader.

    Reads wait on a condition variable; an abort or a hang-up wakes them.

    NOTE: the reader thread cannot stop reading for one request without
    stalling the others on the connection, so a body up to CONTENT_LENGTH
    is buffered in memory however slowly the application reads it.  Web
    servers that multiplex are rare; behind nginx, multiplexing brings
    nothing.
    """

    def _wait_for_data(self):
        # Called with the lock held, by _fill, which loops until data, the
        # end of the stream or an error.  The connection's own read timeout
        # aborts the request after one read timeout; this wait gives it
        # _INPUT_WAIT_FACTOR of them before it stops waiting by itself.
        timeout = getattr(self._conn.server, 'readTimeout', 60.0) or 60.0
        before = (self._available(), self._eof, self._error)
        self._cond.wait(timeout * _INPUT_WAIT_FACTOR)
        if (self._available(), self._eof, self._error) == before:
            self._error = 'timed out waiting for the request body'


class OutputStream(object):
    """A request's STDOUT or STDERR stream.

    Each ``write`` is sent at once as records of at most ``maxwrite``
    bytes, unless ``buffered``, in which case data waits for ``flush``.
    Output written after the request was aborted is dropped.  ``close``
    does not send: the end-of-stream record goes out with FCGI_END_REQUEST
    in one system call.
    """

    def __init__(self, conn, req, type, buffered=False):
        self._conn = conn
        self._req = req
        self._type = type
        self._buffered = buffered
        self._pending = []
        self.dataWritten = False
        self.closed = False

    def _encode(self, data):
        return encode_stream(self._type, self._req.requestId, data,
                             getattr(self._conn.server, 'maxwrite', 8192))

    def write(self, data):
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError('%s data must be bytes, not %s'
                            % (self._stream_name(), type(data).__name__))
        if not data:
            return
        if self.closed:
            raise ValueError('write to a closed %s stream' % self._stream_name())
        self.dataWritten = True
        if self._req.aborted:
            return
        records = self._encode(bytes(data))
        if self._buffered:
            self._pending.append(records)
        else:
            self._conn._send(records)

    def write_final(self, data):
        """Queue ``data`` to go out with the end of the request."""
        if data:
            self.dataWritten = True
            if not self._req.aborted:
                self._pending.append(self._encode(bytes(data)))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._pending:
            data = b''.join(self._pending)
            del self._pending[:]
            self._conn._send(data)

    def close(self):
        """Queue the end-of-stream record; return nothing."""
        if self.closed:
            return
        self.closed = True
        if self._type == 6 or self.dataWritten:  # STDOUT always ends
            self._pending.append(encode_record(self._type, self._req.requestId))

    def take_pending(self):
        """Return and forget the bytes queued for the end of the request."""
        data = b''.join(self._pending)
        del self._pending[:]
        return data

    def _stream_name(self):
        return 'FCGI_STDOUT' if self._type == 6 else 'FCGI_STDERR'


class ErrorStream(object):
    """``wsgi.errors``: text written here goes to the FastCGI STDERR stream,
    which web servers copy to their error log."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if not PY2 and isinstance(text, str):
            text = text.encode('utf-8', 'replace')
        elif PY2 and not isinstance(text, str):
            text = text.encode('utf-8', 'replace')
        self._stream.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self._stream.flush()


class TeeOutputStream(object):
    """Write to several streams at once."""

    def __init__(self, streamList):
        self._streams = list(streamList)

    def write(self, data):
        for stream in self._streams:
            stream.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        for stream in self._streams:
            stream.flush()


class StdoutWrapper(object):
    """Wrap a stream, counting whether anything was written to it.

    ``dataWritten`` becomes True on the first non-empty write; other
    attributes come from the wrapped stream.
    """

    def __init__(self, stdout):
        self._stream = stdout
        self.dataWritten = False

    def write(self, data):
        if data:
            self.dataWritten = True
        self._stream.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)
