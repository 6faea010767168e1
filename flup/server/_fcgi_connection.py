"""FastCGI connection drivers: socket I/O around the sans-IO protocol state.

:class:`Connection` serves one request at a time and runs the application
in its own thread.  :class:`MultiplexedConnection` runs each request on a
pool thread while its own thread keeps reading.

Both end the same way, whatever ended them (end of file, a reset, a read
timeout, a protocol error, a shutdown): every open request is marked
aborted and its input woken, request threads get ``gracePeriod`` seconds to
return and are discarded after that, and the socket is closed exactly once.
"""

from __future__ import absolute_import

import errno
import logging
import signal
import socket
import threading
import traceback

from flup._compat import monotonic, to_native
from flup.server._fcgi_protocol import (
    FCGI_GET_VALUES_RESULT, FCGI_KEEP_CONN, FCGI_NULL_REQUEST_ID,
    FCGI_OVERLOADED, FCGI_REQUEST_COMPLETE, FCGI_STDERR, FCGI_STDOUT,
    FCGI_UNKNOWN_TYPE, DataReceived, GetValues, ProtocolError,
    RecordParser, RequestAborted, RequestRejected, RequestStarted,
    ServerConnectionState, StdinReceived, UnknownType, encode_end_request,
    encode_pairs, encode_record, encode_unknown_type)
from flup.server._fcgi_streams import (
    InputStream, MultiplexedInputStream, OutputStream)
from flup.server._netio import (
    close_gracefully, close_quietly, describe_error, describe_peer,
    is_peer_loss, peer_ip, shutdown_quietly, wait_readable)
from flup.server._wsgi import content_length, log_access

log = logging.getLogger('flup.server.fcgi_base')

# Bytes asked of the socket per read: one maximal record with its header.
_RECV_SIZE = 65536 + 8

# Seconds a connection that has served nothing yet waits for its first
# request after a stop request.  Web servers send the request right after
# connecting, so this only bounds the wait for a silent peer.
_FIRST_REQUEST_WAIT = 1.0


class TimeoutException(Exception):
    """The application ran longer than the fork server's ``timeout``."""


class Request(object):
    """One FastCGI request and its streams.

    Attributes: ``server``, ``params`` (dict of native strings), ``stdin``,
    ``stdout``, ``stderr``, ``data``, ``requestId``, ``role``, ``flags`` and
    ``aborted`` (True once the web server hung up or aborted the request).
    ``timeout`` is the fork server's limit, in seconds, on the application's
    run time; it is enforced with SIGALRM, so only in the main thread.
    """

    def __init__(self, conn, inputStreamClass, timeout=None):
        self._conn = conn
        self.server = conn.server
        self.params = {}
        self.stdin = inputStreamClass(conn)
        self.data = inputStreamClass(conn)
        self.stdout = OutputStream(conn, self, FCGI_STDOUT)
        self.stderr = OutputStream(conn, self, FCGI_STDERR)
        self.requestId = None
        self.role = None
        self.flags = 0
        self.aborted = False
        self.abort_reason = None
        self.ended = False
        self.access_record = None
        self._timeout = timeout

    @property
    def peer(self):
        return self._conn.peer

    def abort(self, reason):
        """Mark the request aborted and wake any read of its input."""
        if self.ended:
            # FCGI_END_REQUEST is out: a hang-up now comes after a
            # complete response and aborts nothing.
            return
        if not self.aborted:
            self.abort_reason = reason
            self.aborted = True
        self.stdin.abort(reason)
        self.data.abort(reason)

    def is_disconnected(self):
        """Return True once the web server hung up or aborted this request."""
        if not self.aborted:
            self._conn._poll_peer()
        return self.aborted

    def timeout_handler(self, signum, frame):
        raise TimeoutException('the application ran longer than %s seconds'
                               % self._timeout)

    def run(self):
        """Run the server's handler, then end the request."""
        app_status = 0
        protocol_status = FCGI_REQUEST_COMPLETE
        old_alarm = self._start_alarm()
        try:
            if not self.aborted:
                protocol_status, app_status = self.server.handler(self)
        except Exception as error:
            self._handle_exception(error)
        finally:
            self._stop_alarm(old_alarm)
        self._flush()
        self._end(app_status, protocol_status)
        if self.aborted:
            log.info('request %d from %s aborted: %s', self.requestId,
                     self.peer, self.abort_reason)
        if self.access_record is not None:
            log_access(*self.access_record)

    def _handle_exception(self, error):
        if self.aborted:
            # The application saw the hang-up (ClientDisconnected) or failed
            # because of it; nothing can reach the web server any more.
            log.debug('request %d from %s ended by %s after the abort',
                      self.requestId, self.peer, type(error).__name__)
            return
        log.error('application error in request %d from %s',
                  self.requestId, self.peer, exc_info=True)
        try:
            self.stderr.write(traceback.format_exc().encode('utf-8', 'replace'))
        except (TypeError, ValueError):
            pass
        if not self.stdout.dataWritten:
            self.server.error(self)

    def _start_alarm(self):
        if not self._timeout:
            return None
        old = signal.signal(signal.SIGALRM, self.timeout_handler)
        signal.alarm(int(self._timeout))
        return old

    def _stop_alarm(self, old):
        if old is None and not self._timeout:
            return
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old if old is not None else signal.SIG_DFL)

    def _flush(self):
        self.stdout.close()
        self.stderr.close()

    def _end(self, appStatus=0, protocolStatus=FCGI_REQUEST_COMPLETE):
        self._conn.end_request(self, appStatus, protocolStatus)

    def take_pending_output(self):
        return self.stdout.take_pending() + self.stderr.take_pending()


class Connection(object):
    """A connection from the web server that serves one request at a time.

    ``Connection(sock, addr, server, timeout)``: ``timeout`` is passed to
    each :class:`Request` (the fork server's per-request time limit).
    """

    multiplexed = False
    _inputStreamClass = InputStream

    def __init__(self, sock, addr, server, timeout=None):
        self._sock = sock
        self._addr = addr
        self.server = server
        self._timeout = timeout
        self.peer = describe_peer(addr)
        self._state = ServerConnectionState(
            multiplexed=self.multiplexed, roles=server.roles)
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._requests = {}
        self._ready = []
        self._running = 0
        self._served = 0
        self._lost = False
        self._closed = False
        self._stopping = False
        self._close_after_request = False
        self._head_started = None

    def __repr__(self):
        return '<%s from %s>' % (type(self).__name__, self.peer)

    # The job protocol of the process models.

    def run(self):
        """Serve requests until the connection ends, then clean up."""
        stats = getattr(self.server, '_stats', None)
        if stats is not None:
            stats.connection_opened()
        try:
            if not self._peer_allowed():
                self._connection_lost('peer not in FCGI_WEB_SERVER_ADDRS')
                return
            self._prepare_socket()
            while self._should_continue():
                if not self.process_input():
                    break
                self._run_ready()
        except Exception:
            log.exception('unexpected error on the connection from %s', self.peer)
            self._connection_lost('internal error')
        finally:
            self._finish()
            if stats is not None:
                stats.connection_closed()

    def stop(self):
        """Finish the request in progress, then end; called on shutdown."""
        with self._state_lock:
            # A request whose PARAMS are still arriving counts as in progress.
            receiving = self._state.awaiting_input
        with self._cond:
            self._stopping = True
            idle = not self._requests and not self._ready and not receiving
        if idle:
            self._wake_reader()

    def abort(self):
        """End the connection now, aborting its requests."""
        self._connection_lost('the server is shutting down')

    # Reading.

    def _prepare_socket(self):
        self._sock.setblocking(True)
        if self._sock.gettimeout() is None:
            # Bounds every send: a web server that stops reading for this
            # long is treated as gone.
            self._sock.settimeout(getattr(self.server, 'readTimeout', 60.0))

    def _peer_allowed(self):
        allowed = getattr(self.server, '_web_server_addrs', None)
        ip = peer_ip(self._addr)
        if allowed is None or ip is None or ip in allowed:
            return True
        log.warning('connection from %s rejected: not in FCGI_WEB_SERVER_ADDRS',
                    self.peer)
        return False

    def _should_continue(self):
        if self._lost or self._closed:
            return False
        with self._cond:
            if self._requests or self._ready:
                return True
            if self._close_after_request:
                return False
        if self.server_stop_requested():
            # A connection accepted just before the stop request (a prefork
            # child asked to quit as it accepted) may already carry its
            # first request: serve that instead of closing it unanswered.
            # This also applies when the stop request woke the first read,
            # which sets _stopping.
            return self._served == 0 and self._first_request_arriving()
        return True

    def _first_request_arriving(self):
        with self._state_lock:
            if self._state.awaiting_input:
                return True
        # Just after accept() the web server may not have sent anything yet.
        try:
            return bool(wait_readable([self._sock.fileno()],
                                      _FIRST_REQUEST_WAIT))
        except (socket.error, OSError, ValueError):
            return False

    def server_stop_requested(self):
        if self._stopping:
            return True
        if getattr(self.server, 'stop_requested', False):
            self._stopping = True
        return self._stopping

    def _read_timeout(self):
        """Seconds to wait for the web server, or None for no limit.

        Any silence in the middle of a record or of a request's input may
        last ``readTimeout``.  A request head (FCGI_BEGIN_REQUEST and the
        PARAMS stream) must also arrive whole within ``readTimeout`` of its
        first byte, so that a peer trickling bytes cannot hold the
        connection; nginx, Apache httpd and lighttpd send it at once.
        """
        read_timeout = getattr(self.server, 'readTimeout', 60.0)
        with self._state_lock:
            awaiting = self._state.awaiting_input
            receiving_head = self._state.receiving_head
        now = monotonic()
        if not receiving_head:
            self._head_started = None
        elif self._head_started is None:
            self._head_started = now
        if self._head_started is not None:
            return max(0.0, min(read_timeout,
                                self._head_started + read_timeout - now))
        if awaiting or (self._served == 0 and not self._requests):
            return read_timeout
        return None

    def _state_awaiting_input(self):
        with self._state_lock:
            return self._state.awaiting_input

    def _wait_fds(self):
        fds = [self._sock.fileno()]
        if not self._stopping:
            fds.extend(getattr(self.server, 'wakeup_fds', ()))
        return fds

    def process_input(self, timeout=False):
        """Read once from the socket and handle the records that arrived.

        Return False when the connection is over.  ``timeout`` overrides
        the wait (0 polls without blocking).
        """
        if self._lost or self._closed:
            return False
        polling = timeout is not False
        if not polling:
            timeout = self._read_timeout()
        try:
            fileno = self._sock.fileno()
            ready = wait_readable(self._wait_fds(), timeout)
        except (socket.error, OSError, ValueError) as error:
            self._connection_lost(describe_error(error))
            return False
        if not ready:
            if polling or timeout is None:
                return True
            if self._head_started is not None:
                log.warning('no complete request head from %s within %.1f s '
                            '(readTimeout): closing the connection',
                            self.peer, monotonic() - self._head_started)
            elif self._requests or self._state_awaiting_input():
                log.warning('no data from %s for %.1f s in the middle of a '
                            'request (readTimeout): closing the connection',
                            self.peer, timeout)
            else:
                log.warning('no request from %s within %.1f s of connecting '
                            '(readTimeout): closing the connection',
                            self.peer, timeout)
            self._connection_lost('read timed out')
            return False
        if fileno not in ready:
            self._on_wakeup()
            return True
        try:
            data = self._sock.recv(_RECV_SIZE)
        except (socket.error, OSError) as error:
            if error.errno in (errno.EAGAIN, errno.EINTR):
                return True
            self._connection_lost(describe_error(error))
            return False
        if not data:
            with self._cond:
                # _wake_reader shut the read side down to end a connection
                # that has no request left; that is no hang-up.
                ending = not self._requests and (
                    self._close_after_request or self._stopping)
            if not ending:
                self._connection_lost('the web server closed the connection')
            return False
        try:
            with self._state_lock:
                events = self._state.receive_data(data)
        except ProtocolError as error:
            log.warning('protocol error from %s: %s; closing the connection',
                        self.peer, error)
            self._connection_lost('protocol error: %s' % error)
            return False
        for event in events:
            self._handle_event(event)
        return True

    def _on_wakeup(self):
        self.server_stop_requested()

    def _poll_peer(self):
        """Handle whatever the web server sent, without blocking."""
        if self.multiplexed or self._lost:
            return
        self.process_input(timeout=0)

    def _handle_event(self, event):
        if isinstance(event, StdinReceived):
            request = self._requests.get(event.request_id)
            if request is not None:
                request.stdin.add_data(event.data)
        elif isinstance(event, RequestStarted):
            self._start_request(event)
        elif isinstance(event, DataReceived):
            request = self._requests.get(event.request_id)
            if request is not None:
                request.data.add_data(event.data)
        elif isinstance(event, RequestAborted):
            request = self._requests.get(event.request_id)
            if request is not None:
                request.abort('the web server sent FCGI_ABORT_REQUEST')
                # The web server waits for FCGI_END_REQUEST; send it now
                # rather than when the application returns.
                self.end_request(request)
            else:
                self._end_unstarted_request(event.request_id)
        elif isinstance(event, GetValues):
            self._send_values(event.names)
        elif isinstance(event, UnknownType):
            log.info('%s sent unknown management record type %d',
                     self.peer, event.record_type)
            self._send(encode_unknown_type(event.record_type))
        elif isinstance(event, RequestRejected):
            log.warning('request %d from %s rejected: %s', event.request_id,
                        self.peer, event.reason)
            self._send(encode_end_request(event.request_id, 0,
                                          event.protocol_status))
            with self._cond:
                # FastCGI 1.0 section 5.1: without FCGI_KEEP_CONN the
                # connection closes after this FCGI_END_REQUEST, unless
                # other requests still need it.
                if not event.keep_conn and not self._requests:
                    self._close_after_request = True

    def _end_unstarted_request(self, request_id):
        """Answer FCGI_ABORT_REQUEST for a request whose PARAMS had not ended.

        The application never saw the request, but the web server waits for
        its FCGI_END_REQUEST, and the id stays taken until it is sent.
        """
        with self._state_lock:
            # An id no longer open was ended by its request thread meanwhile.
            if request_id not in self._state.open_request_ids:
                return
            self._state.request_ended(request_id)
        log.info('request %d from %s aborted before its parameters ended',
                 request_id, self.peer)
        self._send(encode_end_request(request_id, 0, FCGI_REQUEST_COMPLETE))

    def _send_values(self, names):
        capability = self.server.capability
        pairs = []
        answered = set()
        for name in names:
            native = to_native(name)
            # Each name is answered once: a query that repeats a known name
            # thousands of times would otherwise need a result record over
            # the 65535-byte limit.
            if native in capability and native not in answered:
                answered.add(native)
                pairs.append((name, str(capability[native]).encode('ascii')))
        self._send(encode_record(FCGI_GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID,
                                 encode_pairs(pairs)))

    def _start_request(self, event):
        request = self.server.request_class(
            self, self._inputStreamClass, self._timeout)
        request.requestId = event.request_id
        request.role = event.role
        request.flags = FCGI_KEEP_CONN if event.keep_conn else 0
        params = {}
        for name, value in event.params:
            params[to_native(name)] = to_native(value)
        request.params = params
        # str.isdigit() accepts characters such as U+00B2 that int() rejects.
        length = content_length(params)
        if length is not None:
            request.stdin.set_limit(length)
        with self._cond:
            self._requests[event.request_id] = request
            self._ready.append(request)

    # Running requests.

    def _run_ready(self):
        while True:
            with self._cond:
                if not self._ready:
                    return
                request = self._ready.pop(0)
                self._running += 1
            self._dispatch(request)

    def _dispatch(self, request):
        # The web server may have hung up while the connection waited in the
        # listen backlog, so check once before running the application.
        self._poll_peer()
        try:
            self._run_request(request)
        finally:
            self._request_finished()

    def _run_request(self, request):
        stats = getattr(self.server, '_stats', None)
        if stats is not None:
            stats.request_started()
        try:
            request.run()
        finally:
            if stats is not None:
                stats.request_finished(request.aborted)

    def _request_finished(self):
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    # Writing.

    def _send(self, data):
        """Send bytes to the web server; return False if it is gone."""
        with self._write_lock:
            if self._lost or self._closed:
                return False
            try:
                self._sock.sendall(data)
                return True
            except (socket.error, OSError) as error:
                if not is_peer_loss(error):
                    log.info('sending to %s failed: %s', self.peer,
                             describe_error(error))
                reason = describe_error(error)
        self._connection_lost('sending failed: %s' % reason)
        return False

    def writeRecord(self, rec):
        """Send a :class:`Record`."""
        self._send(rec.encode())

    def end_request(self, req, appStatus=0,
                    protocolStatus=FCGI_REQUEST_COMPLETE, remove=True):
        """Send the request's remaining output and FCGI_END_REQUEST."""
        with self._cond:
            if req.ended:
                return
            req.ended = True
        data = req.take_pending_output()
        data += encode_end_request(req.requestId, appStatus, protocolStatus)
        if not self._send(data) and not req.aborted:
            # The connection was lost before the request could be aborted
            # (abort() ignores an ended request), so the web server got
            # neither the whole output nor FCGI_END_REQUEST.
            req.abort_reason = 'the connection was lost before FCGI_END_REQUEST'
            req.aborted = True
        self._served += 1
        if not remove:
            return
        with self._state_lock:
            self._state.request_ended(req.requestId)
        with self._cond:
            if self._requests.get(req.requestId) is req:
                del self._requests[req.requestId]
            if not req.flags & FCGI_KEEP_CONN:
                # FastCGI 1.0 section 5.1: without FCGI_KEEP_CONN the
                # application closes the connection after this request.
                self._close_after_request = True
            # A connection that runs requests in its own thread checks these
            # flags itself once the request returns.
            wake = self.multiplexed and not self._requests and (
                self._close_after_request or self._stopping)
        if wake:
            self._wake_reader()

    def _wake_reader(self):
        """Make the reading thread notice that the connection should end."""
        shutdown_quietly(self._sock, socket.SHUT_RD)

    # Ending.

    def _connection_lost(self, reason):
        """Record that the web server is gone and abort every request."""
        with self._cond:
            first = not self._lost
            self._lost = True
            requests = list(self._requests.values()) + self._ready
            del self._ready[:]
            self._cond.notify_all()
        if first:
            log.debug('connection from %s ended: %s', self.peer, reason)
        for request in requests:
            request.abort(reason)
        if first:
            # Wake the reading thread if another thread noticed the loss.
            shutdown_quietly(self._sock)

    def _finish(self):
        with self._cond:
            still_open = list(self._requests.values())
        if still_open and not self._lost:
            self._connection_lost('the connection is closing')
        self._join_requests()
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            lost = self._lost
        if lost:
            close_quietly(self._sock)
        else:
            close_gracefully(self._sock)

    def _join_requests(self):
        grace = getattr(self.server, 'gracePeriod', 5.0)
        deadline = monotonic() + grace
        with self._cond:
            while self._running:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            running = self._running
            ids = sorted(self._requests)
        if running:
            log.warning('discarding %d request thread(s) of %s still running '
                        '%.1f s after the connection ended (request ids %s); '
                        'their output will be dropped', running, self.peer,
                        grace, ', '.join(str(i) for i in ids) or '-')
            stats = getattr(self.server, '_stats', None)
            if stats is not None:
                stats.requests_discarded(running)


class MultiplexedConnection(Connection):
    """A connection that runs each request on a pool thread.

    Its own thread keeps reading, so it sees FCGI_ABORT_REQUEST and
    hang-ups while applications run.  A request that finds no free thread
    gets FCGI_END_REQUEST with FCGI_OVERLOADED at once.
    """

    multiplexed = True
    _inputStreamClass = MultiplexedInputStream

    def _dispatch(self, request):
        pool = getattr(self.server, '_threadPool', None)
        job = _RequestJob(self, request)
        if pool is not None and pool.addJob(job, allowQueuing=False):
            return
        self._request_finished()
        log.warning('request %d from %s rejected: no worker thread free '
                    '(maxThreads=%s)', request.requestId, self.peer,
                    getattr(pool, 'max_threads', '?'))
        self.end_request(request, 0, FCGI_OVERLOADED)


class _RequestJob(object):
    """A multiplexed request as a thread pool job."""

    __slots__ = ('_conn', '_request')

    def __init__(self, conn, request):
        self._conn = conn
        self._request = request

    def run(self):
        try:
            self._conn._run_request(self._request)
        finally:
            self._conn._request_finished()


class Record(object):
    """One FastCGI record, for code that reads or writes records itself.

    ``read(sock)`` receives one record (raising EOFError at end of file or
    ProtocolError for a bad header); ``write(sock)`` sends it.
    """

    def __init__(self, type=FCGI_UNKNOWN_TYPE, requestId=FCGI_NULL_REQUEST_ID):
        self.version = 1
        self.type = type
        self.requestId = requestId
        self.contentLength = 0
        self.paddingLength = 0
        self.contentData = b''

    def encode(self):
        return encode_record(self.type, self.requestId, self.contentData)

    def read(self, sock):
        header = _recv_exactly(sock, 8)
        parser = RecordParser()
        parser.feed(header)
        length = (ord(header[4:5]) << 8) | ord(header[5:6])
        parser.feed(_recv_exactly(sock, length + ord(header[6:7])))
        record = parser.next_record()
        self.version = ord(header[0:1])
        self.type = record.type
        self.requestId = record.request_id
        self.contentData = record.content
        self.contentLength = len(record.content)
        self.paddingLength = ord(header[6:7])

    def write(self, sock):
        self.contentLength = len(self.contentData)
        self.paddingLength = -self.contentLength & 7
        sock.sendall(self.encode())


def _recv_exactly(sock, size):
    chunks = []
    while size > 0:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError('connection closed in the middle of a record')
        chunks.append(chunk)
        size -= len(chunk)
    return b''.join(chunks)
