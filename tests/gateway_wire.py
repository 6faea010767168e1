"""Independent SCGI and AJP 1.3 test clients, and an in-process server runner.

The encoders here are written from the protocol descriptions without
importing flup, so codec tests do not check flup against itself.  Every
socket wait has a timeout, and clients connect to loopback addresses or
Unix sockets that the tests create.
"""

from __future__ import absolute_import

import os
import socket
import struct
import tempfile
import threading
import time

from tests.support import procinfo
from tests.support.servers import free_port

IO_TIMEOUT = 10.0
JOIN_TIMEOUT = 15.0


# -- SCGI -------------------------------------------------------------------

def scgi_request(params, body=b'', content_length=None):
    """Return the bytes of an SCGI request.

    ``params`` is a list of (name, value) str pairs sent after
    CONTENT_LENGTH and SCGI; ``content_length`` defaults to ``len(body)``.
    """
    if content_length is None:
        content_length = len(body)
    fields = [('CONTENT_LENGTH', str(content_length)), ('SCGI', '1')]
    fields.extend(params)
    payload = b''.join(name.encode('latin-1') + b'\x00' + value.encode('latin-1') + b'\x00'
                       for name, value in fields)
    return ('%d:' % len(payload)).encode('ascii') + payload + b',' + body


def cgi_params(method='GET', path='/', query='', extra=()):
    """Return SCGI request variables for ``method`` and ``path``."""
    params = [('REQUEST_METHOD', method), ('SCRIPT_NAME', ''), ('PATH_INFO', path),
              ('QUERY_STRING', query),
              ('REQUEST_URI', path + ('?' + query if query else '')),
              ('SERVER_NAME', 'localhost'), ('SERVER_PORT', '80'),
              ('SERVER_PROTOCOL', 'HTTP/1.1'), ('REMOTE_ADDR', '127.0.0.1')]
    params.extend(extra)
    return params


def connect(address, timeout=IO_TIMEOUT):
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET6 if ':' in address[0] else socket.AF_INET,
                             socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def read_until_close(sock, limit=1 << 24):
    """Read until the peer closes; return the bytes (raises socket.timeout)."""
    chunks = []
    size = 0
    while size < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b''.join(chunks)


def scgi_exchange(address, params, body=b'', timeout=IO_TIMEOUT):
    """Send one SCGI request and return the raw response bytes."""
    sock = connect(address, timeout)
    try:
        sock.sendall(scgi_request(params, body))
        return read_until_close(sock)
    finally:
        sock.close()


def reset_close(sock):
    """Close with SO_LINGER 0, so the peer gets a TCP RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


# -- AJP 1.3 ----------------------------------------------------------------

AJP_METHOD_CODES = {'GET': 2, 'HEAD': 3, 'POST': 4, 'PUT': 5, 'DELETE': 6}
AJP_HEADER_CODES = {'content-type': 0xA007, 'content-length': 0xA008, 'host': 0xA00B,
                    'user-agent': 0xA00E, 'cookie': 0xA009}
AJP_RESPONSE_HEADER_NAMES = ['Content-Type', 'Content-Language', 'Content-Length', 'Date',
                             'Last-Modified', 'Location', 'Set-Cookie', 'Set-Cookie2',
                             'Servlet-Engine', 'Status', 'WWW-Authenticate']


def ajp_string(value):
    if value is None:
        return b'\xff\xff'
    data = value.encode('latin-1') if not isinstance(value, bytes) else value
    return struct.pack('>H', len(data)) + data + b'\x00'


def ajp_packet(payload):
    """Frame a payload as a packet from the web server."""
    return b'\x12\x34' + struct.pack('>H', len(payload)) + payload


def ajp_forward_request(method='GET', uri='/', query=None, headers=(), protocol='HTTP/1.1',
                        remote_addr='127.0.0.1', server_name='localhost', server_port=80,
                        is_ssl=False, attributes=()):
    """Return a FORWARD_REQUEST packet.  ``headers`` are (name, value) str
    pairs; known names are sent as codes.  ``attributes`` are (code, bytes)."""
    parts = [b'\x02', struct.pack('B', AJP_METHOD_CODES[method]), ajp_string(protocol),
             ajp_string(uri), ajp_string(remote_addr), ajp_string(None), ajp_string(server_name),
             struct.pack('>H', server_port), b'\x01' if is_ssl else b'\x00',
             struct.pack('>H', len(headers))]
    for name, value in headers:
        code = AJP_HEADER_CODES.get(name.lower())
        parts.append(struct.pack('>H', code) if code else ajp_string(name))
        parts.append(ajp_string(value))
    if query is not None:
        parts.append(b'\x05' + ajp_string(query))
    for code, value in attributes:
        parts.append(struct.pack('B', code) + value)
    parts.append(b'\xff')
    return ajp_packet(b''.join(parts))


def ajp_body(data):
    """Return a request body packet; b'' gives the end-of-body packet."""
    if not data:
        return ajp_packet(b'')
    return ajp_packet(struct.pack('>H', len(data)) + data)


def ajp_cping():
    return ajp_packet(b'\x0a')


class AJPResponse(object):
    """A response read by :func:`ajp_read_response`."""

    def __init__(self):
        self.status = None
        self.reason = None
        self.headers = []
        self.body = b''
        self.reuse = None
        self.body_requests = []  # sizes of GET_BODY_CHUNK messages seen

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def _recv_exact(sock, size):
    data = b''
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError('connection closed after %d of %d bytes' % (len(data), size))
        data += chunk
    return data


def ajp_read_packet(sock):
    """Read one container packet and return its payload."""
    header = _recv_exact(sock, 4)
    if header[:2] != b'AB':
        raise ValueError('bad container magic %r' % header[:2])
    return _recv_exact(sock, struct.unpack('>H', header[2:])[0])


def _take_string(payload, pos):
    length = struct.unpack('>H', payload[pos:pos + 2])[0]
    if length == 0xFFFF:
        return None, pos + 2
    value = payload[pos + 2:pos + 2 + length].decode('latin-1')
    return value, pos + 3 + length


def ajp_read_response(sock, body_chunks=(), max_packets=10000):
    """Read packets up to END_RESPONSE and return an AJPResponse.

    Each GET_BODY_CHUNK gets the next item of ``body_chunks`` (bytes) in
    reply, or the end-of-body packet when none is left.
    """
    chunks = list(body_chunks)
    response = AJPResponse()
    for _ in range(max_packets):
        payload = ajp_read_packet(sock)
        kind = ord(payload[0:1])
        if kind == 4:
            response.status = struct.unpack('>H', payload[1:3])[0]
            response.reason, pos = _take_string(payload, 3)
            count = struct.unpack('>H', payload[pos:pos + 2])[0]
            pos += 2
            for _ in range(count):
                if payload[pos:pos + 1] == b'\xa0':
                    name = AJP_RESPONSE_HEADER_NAMES[struct.unpack('>H', payload[pos:pos + 2])[0] - 0xA001]
                    pos += 2
                else:
                    name, pos = _take_string(payload, pos)
                value, pos = _take_string(payload, pos)
                response.headers.append((name, value))
        elif kind == 3:
            length = struct.unpack('>H', payload[1:3])[0]
            response.body += payload[3:3 + length]
        elif kind == 6:
            response.body_requests.append(struct.unpack('>H', payload[1:3])[0])
            sock.sendall(ajp_body(chunks.pop(0) if chunks else b''))
        elif kind == 5:
            response.reuse = payload[1:2] == b'\x01'
            return response
        else:
            raise ValueError('unexpected container message type %d' % kind)
    raise ValueError('no END_RESPONSE within %d packets' % max_packets)


# -- In-process servers -----------------------------------------------------

class RunningServer(object):
    """Run ``server_class(app, bindAddress=..., **keywords).run()`` in a thread.

    ``bind`` is 'tcp' or 'unix'.  Inside the ``with`` block ``address`` is
    where the server listens and ``server`` the instance; ``result`` is
    what ``run()`` returned after the block.  ``run()`` runs outside the
    main thread, so no signal handlers are installed; ``shutdown()`` stops it.
    """

    def __init__(self, server_class, app, bind='tcp', **keywords):
        self.server_class = server_class
        self.app = app
        self.bind = bind
        self.keywords = keywords
        self.address = None
        self.server = None
        self.result = None
        self._thread = None
        self._tmpdir = None

    def __enter__(self):
        if self.bind == 'unix':
            self._tmpdir = tempfile.mkdtemp(prefix='flup-gw-')
            self.address = os.path.join(self._tmpdir, 'server.sock')
        else:
            self.address = ('127.0.0.1', free_port())
        self.keywords.setdefault('bindAddress', self.address)
        self.server = self.server_class(self.app, **self.keywords)
        self._thread = threading.Thread(target=self._run, name='flup-test-server')
        self._thread.daemon = True
        self._thread.start()
        self.wait_listening()
        return self

    def _run(self):
        self.result = self.server.run()

    def wait_listening(self, timeout=10.0):
        deadline = time.time() + timeout
        for _ in range(int(timeout / 0.02) + 1):
            try:
                connect(self.address, 1.0).close()
                return
            except (socket.error, OSError):
                if not self._thread.is_alive() or time.time() > deadline:
                    break
                time.sleep(0.02)
        raise RuntimeError('server did not listen on %r' % (self.address,))

    def __exit__(self, exc_type, exc_value, traceback):
        self.server.shutdown()
        self._thread.join(JOIN_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError('run() did not return within %.0f s of shutdown()' % JOIN_TIMEOUT)
        return False


# -- Resource counts --------------------------------------------------------

SETTLE_TIMEOUT = 10.0  # seconds for threads and descriptors to come back


def resource_counts(pid):
    """Return (threads, open descriptors) of ``pid`` and its descendants."""
    stats = procinfo.tree_stats(pid)
    return stats['threads'], stats['fds']


def settled_counts(pid):
    """Return the counts once two reads 0.2 s apart agree (at most 5 s)."""
    previous = resource_counts(pid)
    for _ in range(25):
        time.sleep(0.2)
        current = resource_counts(pid)
        if current == previous:
            return current
        previous = current
    return previous


def wait_back_to(pid, baseline, timeout=SETTLE_TIMEOUT):
    """Wait until the counts are at most ``baseline``; return the last counts."""
    def back():
        counts = resource_counts(pid)
        return counts if counts[0] <= baseline[0] and counts[1] <= baseline[1] else None

    return procinfo.wait_until(back, timeout, interval=0.1) or resource_counts(pid)
