"""Socket helpers shared by every protocol and process model.

Peer loss is classified here and nowhere else: a connection that gets one
of :data:`PEER_LOSS_ERRNOS` (or end of file, or a timeout) treats the web
server as gone.  Every wait in this module takes a deadline.
"""

from __future__ import absolute_import

import errno
import fcntl
import logging
import os
import select
import socket
import stat

from flup._compat import monotonic, retry_on_eintr

log = logging.getLogger(__name__)

# Errors that mean the other end of a connection is gone, or that the socket
# was shut down or closed under us by another thread of this process.
PEER_LOSS_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ENOTCONN',
        'ESHUTDOWN', 'EBADF', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETRESET',
        'ENETUNREACH')
    if hasattr(errno, name))

# After the last response on a connection the server half-closes and reads
# what the web server still sends, so that closing does not reset a peer
# that is still writing (a "lingering close").  These bound that drain.  The
# values are a judgement call: long enough for a web server to finish
# sending, short enough not to hold a thread for long.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 256 * 1024

_HAVE_POLL = hasattr(select, 'poll')


def is_peer_loss(error):
    """Return True when ``error`` from a socket call means the peer is gone."""
    if isinstance(error, socket.timeout):
        return True
    return getattr(error, 'errno', None) in PEER_LOSS_ERRNOS


def describe_error(error):
    """Return a short text for a socket error, for log lines."""
    if isinstance(error, socket.timeout):
        return 'timed out'
    code = getattr(error, 'errno', None)
    if code in errno.errorcode:
        return '%s (%s)' % (errno.errorcode[code], os.strerror(code))
    return str(error) or type(error).__name__


def wait_readable(fds, timeout):
    """Wait until one of ``fds`` is readable; return the readable ones.

    ``timeout`` is in seconds, or None to wait without limit.  A hang-up or
    an error on a descriptor counts as readable, so that the caller's next
    read reports it.
    """
    if _HAVE_POLL:
        poller = select.poll()
        mask = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
        for fd in fds:
            poller.register(fd, mask)
        millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        events = retry_on_eintr(poller.poll, millis)
        return [fd for fd, _ in events]
    readable, _, _ = retry_on_eintr(select.select, fds, [], [], timeout)
    return readable


def set_cloexec(fd):
    flags = fcntl.fcntl(fd, fcntl.F_GETFD)
    fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)


def shutdown_quietly(sock, how=socket.SHUT_RDWR):
    """Shut a socket down, ignoring the errors of an already dead peer."""
    try:
        sock.shutdown(how)
    except (socket.error, OSError, ValueError):
        pass


def close_gracefully(sock, linger_seconds=LINGER_SECONDS,
                     max_bytes=LINGER_MAX_BYTES):
    """Half-close ``sock``, drain what the peer still sends, then close it.

    The drain ends at end of file, after ``linger_seconds`` or after
    ``max_bytes``, whichever comes first; it never waits for the peer to
    close.  Return the number of bytes drained.
    """
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = monotonic() + linger_seconds
        while drained < max_bytes:
            remaining = deadline - monotonic()
            if remaining <= 0:
                break
            if not wait_readable([sock.fileno()], remaining):
                break
            chunk = sock.recv(min(65536, max_bytes - drained))
            if not chunk:
                break
            drained += len(chunk)
    except (socket.error, OSError, ValueError):
        pass
    finally:
        close_quietly(sock)
    return drained


def close_quietly(sock):
    try:
        sock.close()
    except (socket.error, OSError):
        pass


def listening_socket_from_fd(fd=0):
    """Return the listening socket a web server passed as ``fd``, or None.

    FastCGI spawners (spawn-fcgi, lighttpd's ``bin-path``, Apache's
    mod_fcgid) start the application with a listening socket on descriptor
    0.  None means descriptor 0 is not a socket, so the process was started
    as plain CGI.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    if not stat.S_ISSOCK(mode):
        return None
    family = _socket_family(fd)
    sock = socket.fromfd(fd, family, socket.SOCK_STREAM)
    try:
        sock.getpeername()
    except (socket.error, OSError) as error:
        if error.errno == errno.ENOTCONN:
            return sock
        raise
    # A connected socket on descriptor 0: some CGI setups pass one.
    sock.close()
    return None


def _socket_family(fd):
    # SO_DOMAIN is 39 on Linux; Python 2.7 does not name it.
    so_domain = getattr(socket, 'SO_DOMAIN', 39)
    probe = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
    try:
        return probe.getsockopt(socket.SOL_SOCKET, so_domain)
    except (socket.error, OSError):
        return socket.AF_INET
    finally:
        probe.close()


def bind_listening_socket(address, umask=None, backlog=socket.SOMAXCONN):
    """Create, bind and listen on ``address``.

    A str is a Unix socket path: an existing socket file there is removed
    first, and ``umask`` applies while the file is created.  A 2-tuple
    ``(host, port)`` is TCP over IPv4 unless ``host`` is an IPv6 literal; a
    longer tuple is an IPv6 address as ``socket.bind`` takes it.
    """
    if isinstance(address, str) or _is_text(address):
        return _bind_unix(address, umask, backlog)
    if not isinstance(address, tuple) or len(address) < 2:
        raise ValueError(
            'bindAddress must be a socket path or a (host, port) tuple, '
            'not %r' % (address,))
    host = address[0]
    if len(address) > 2 or ':' in (host or ''):
        family = socket.AF_INET6
    else:
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        set_cloexec(sock.fileno())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except Exception:
        sock.close()
        raise
    return sock


def _is_text(value):
    try:
        return isinstance(value, unicode)  # noqa: F821 (Python 2 only)
    except NameError:
        return False


def _bind_unix(path, umask, backlog):
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except OSError as error:
        if error.errno != errno.ENOENT:
            raise
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = None
    try:
        set_cloexec(sock.fileno())
        if umask is not None:
            old_umask = os.umask(umask)
        try:
            sock.bind(path)
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        sock.listen(backlog)
    except Exception:
        sock.close()
        raise
    return sock


def socket_file_identity(path):
    """Return what :func:`remove_socket_file` needs to recognise ``path``."""
    return path, os.stat(path).st_ino


def remove_socket_file(identity):
    """Remove a Unix socket file this process bound, if it is still there.

    A newer server may have replaced the file since; the inode shows whether it is still ours.
    """
    path, inode = identity
    try:
        info = os.stat(path)
        if stat.S_ISSOCK(info.st_mode) and info.st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def parse_address_list(text):
    """Parse a comma-separated list of IP addresses into a frozenset.

    The result contains normalised text forms, so ``::1`` and ``0:0::1`` match.
    """
    addresses = set()
    for item in text.split(','):
        item = item.strip()
        if item:
            addresses.add(normalize_ip(item))
    return frozenset(addresses)


def normalize_ip(text):
    """Return the canonical text form of an IPv4 or IPv6 address."""
    text = text.strip()
    if text.startswith('[') and text.endswith(']'):
        text = text[1:-1]
    if text.startswith('::ffff:') and '.' in text:
        return text[len('::ffff:'):]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (socket.error, OSError, ValueError):
            continue
    return text


def peer_ip(address):
    """Return the IP text of a TCP peer address, or None for a Unix peer."""
    if isinstance(address, tuple) and address:
        return normalize_ip(address[0])
    return None


def describe_peer(address):
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        if ':' in host:
            return '[%s]:%s' % (host, address[1])
        return '%s:%s' % (host, address[1])
    if address:
        return 'unix:%s' % (address,)
    return 'unix socket'
