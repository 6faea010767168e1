"""Prefork process model: a parent process and a pool of child processes.

The parent never accepts connections.  It forks children, and each child
waits on the shared listening socket, accepts one connection at a time and
hands it to a job object.  The model does not depend on the protocol,
because the FastCGI, SCGI and AJP front modules combine it with their server
class by multiple inheritance and pass their connection class as
``jobClass``.

Each child has a socketpair to the parent.  The child sends ``MSG_BUSY``
when it accepts a connection and ``MSG_IDLE`` when it is ready for the next
one.  The first ``MSG_IDLE`` also reports that the child started.  The
parent sends ``MSG_QUIT`` to ask a child to exit once its current job, if
any, is done.  End of file on the socketpair means the other process is
gone.
"""

from __future__ import absolute_import

import errno
import logging
import os
import signal
import socket
import sys

from flup._compat import current_thread_is_main, monotonic, retry_on_eintr
from flup.server._netio import (
    close_quietly, describe_error, describe_peer, is_peer_loss, set_cloexec,
    wait_readable)
from flup.server._signals import SignalRecorder

__all__ = ['PreforkServer']

log = logging.getLogger(__name__)

# Messages on a child's socketpair, one byte each.
MSG_BUSY = b'B'  # child to parent: accepted a connection
MSG_IDLE = b'I'  # child to parent: started, or finished a connection
MSG_QUIT = b'Q'  # parent to child: exit once the current job is done

# Exit statuses of a child, read by the parent when it reaps the child.
EXIT_OK = 0  # asked to quit, stopped by a signal, or maxRequests reached
EXIT_START_FAILED = 3  # _child_init() raised: respawning is delayed
EXIT_CRASHED = 4  # an exception escaped the child's loop (a bug)

# Signals the parent acts on.  SIGCHLD is recorded only to wake the main
# loop, so that a dead child is reaped and replaced at once.
PARENT_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM,
                  signal.SIGUSR1, signal.SIGCHLD)
# Signals a child records.  SIGUSR1 is meant for the parent, so a child
# ignores it.  The child still records it, because the default action would
# kill the child when SIGUSR1 is sent to the whole process group.
CHILD_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
CHILD_STOP_SIGNALS = frozenset((signal.SIGHUP, signal.SIGINT, signal.SIGTERM))

# The parent's main loop wakes at least this often (seconds) to reap and
# respawn children even when it cannot install a SIGCHLD handler, which is
# the case when run() is called outside the main thread.
SUPERVISE_INTERVAL = 1.0
# An idle child re-checks for a stop request at least this often (seconds),
# although a signal or a message from the parent wakes it at once.
IDLE_POLL_INTERVAL = 5.0
# After accept() fails for lack of file descriptors or memory, a child
# waits this long (seconds) before it tries again, so it does not spin.
ACCEPT_RETRY_DELAY = 0.5
# Maximum time (seconds) a child waits to send a message to its parent.  A
# parent that reads nothing for this long is treated as gone.
NOTIFY_TIMEOUT = 5.0
# Delay (seconds) before the next fork after a child failed to start.  It
# doubles with every consecutive failure, up to START_BACKOFF_MAX.  A child
# that crashes after it started (EXIT_CRASHED) also delays the next fork.
START_BACKOFF_FIRST = 0.5
START_BACKOFF_MAX = 30.0
# Maximum time (seconds) to reap children after SIGKILL.  A child in
# uninterruptible sleep can outlast it, and is then left as a zombie.
KILL_REAP_TIMEOUT = 5.0
# Poll interval (seconds) while waiting for children to exit.  Exits
# usually wake the wait earlier, through SIGCHLD or end of file.
EXIT_POLL_INTERVAL = 0.1

_RETRY_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        'EAGAIN', 'EWOULDBLOCK', 'EINTR', 'ECONNABORTED', 'EPROTO')
    if hasattr(errno, name))
_DELAY_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name) for name in ('EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM')
    if hasattr(errno, name))


def _signal_names():
    names = {}
    for name in sorted(dir(signal)):
        if name.startswith('SIG') and not name.startswith('SIG_'):
            names.setdefault(getattr(signal, name), name)
    return names


_SIGNAL_NAMES = _signal_names()


def describe_status(status):
    """Return a short text for a status from os.waitpid, for log lines."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum in _SIGNAL_NAMES:
            return 'killed by %s' % _SIGNAL_NAMES[signum]
        return 'killed by signal %d' % signum
    if os.WIFEXITED(status):
        return 'exit status %d' % os.WEXITSTATUS(status)
    return 'wait status %d' % status


def _block_signals():
    """Block the parent's signals in this thread and return the old mask.

    Blocking them across fork() keeps a signal from running the parent's
    handler in the child before the child installs its own.  Python 2.7 has
    no pthread_sigmask, so there the window stays open.
    """
    if not hasattr(signal, 'pthread_sigmask'):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)


def _restore_signal_mask(old_mask):
    if old_mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, IOError, OSError, ValueError):
            pass


class _Child(object):
    """The parent's record of one child process."""

    __slots__ = ('pid', 'sock', 'age', 'ready', 'busy', 'quitting')

    def __init__(self, pid, sock, age):
        self.pid = pid
        self.sock = sock  # the parent's end of the socketpair; None at EOF
        self.age = age  # spawn order, so the oldest idle child quits first
        self.ready = False  # True after the child's first message
        self.busy = False
        self.quitting = False  # MSG_QUIT sent, or about to be

    @property
    def spare(self):
        """Whether the child can take a new connection now or soon."""
        return not self.busy and not self.quitting


class PreforkServer(object):
    """Serve connections from a pool of forked child processes.

    The parent keeps at least ``minSpare`` and at most ``maxSpare`` idle
    children, and never more than ``maxChildren`` children in all.
    ``maxChildren`` is raised to ``maxSpare`` when it is smaller, as in
    upstream flup.  A child exits after ``maxRequests`` connections, and
    the parent forks a fresh one; 0 means no limit.

    In a child, each accepted connection becomes
    ``jobClass(clientSocket, address, *jobArgs)`` and its ``run()`` is
    called.  The child closes the client socket when ``run()`` returns or
    raises.  ``sockTimeout`` is the timeout in seconds set on each client
    socket with ``settimeout``; 0 leaves it in blocking mode.

    ``run(sock)`` returns True after SIGHUP (the caller should reload) and
    False after SIGINT or SIGTERM.  SIGUSR1 makes the parent replace all
    idle children.  On stop, the children get ``gracePeriod`` seconds to
    finish their current job before they are killed with SIGKILL.

    A job that may block on its client socket should also wait on
    ``wakeup_fds``.  When one of them becomes readable, the job checks
    ``stop_requested``, and if it is True, finishes the request in progress
    and returns.
    """

    # Seconds children get to exit after a stop request; front modules and
    # subclasses may change it.
    gracePeriod = 5.0

    def __init__(self, minSpare=1, maxSpare=5, maxChildren=50,
                 maxRequests=0, sockTimeout=0, jobClass=None, jobArgs=()):
        self._minSpare = _check_count('minSpare', minSpare, 1)
        self._maxSpare = _check_count('maxSpare', maxSpare, 1)
        if self._maxSpare < self._minSpare:
            raise ValueError('maxSpare (%d) must be at least minSpare (%d)'
                             % (self._maxSpare, self._minSpare))
        self._maxChildren = max(self._maxSpare,
                                _check_count('maxChildren', maxChildren, 1))
        self._maxRequests = _check_count('maxRequests', maxRequests, 0)
        self._sockTimeout = _check_seconds('sockTimeout', sockTimeout)
        self._jobClass = jobClass
        self._jobArgs = tuple(jobArgs)

        # Connections accepted: by this child in a child, by all children
        # (as reported to it) in the parent.
        self.served_connections = 0
        # Descriptors that become readable when this child should stop;
        # empty in the parent.
        self.wakeup_fds = ()

        self._children = {}  # pid to _Child, in the parent only
        self._spawn_count = 0
        self._start_failures = 0  # consecutive children that failed to start
        self._next_spawn_time = 0.0
        self._signals = None  # the parent's SignalRecorder during run()
        self._keep_going = False
        self._hupReceived = False  # upstream name; its SCGI and AJP fronts read it

        # Child-side state, set after fork.
        self._parent_sock = None
        self._child_signals = None
        self._quit_received = False

    # Hooks for subclasses.

    def _child_init(self):
        """Prepare a freshly forked child before it accepts connections.

        Called in each child after fork.  An exception ends the child with
        ``EXIT_START_FAILED``, and the parent waits longer before each new
        attempt while children keep failing.
        """

    def _isClientAllowed(self, addr):
        """Return whether a connection from ``addr`` may be served."""
        return True

    # Parent.

    def run(self, sock):
        """Serve ``sock`` with a pool of children until a signal stops it.

        Return True when stopped by SIGHUP (reload requested), False when
        stopped by SIGINT, SIGTERM or ``shutdown()``.  The children are
        gone when it returns.
        """
        if self._jobClass is None:
            raise TypeError('PreforkServer.run() needs a jobClass; pass it '
                            'to PreforkServer.__init__()')
        log.info('prefork server starting in process %d (minSpare=%d, '
                 'maxSpare=%d, maxChildren=%d, maxRequests=%d)',
                 os.getpid(), self._minSpare, self._maxSpare,
                 self._maxChildren, self._maxRequests)
        self._keep_going = True
        self._hupReceived = False
        old_timeout = sock.gettimeout()
        # Every child polls the socket and then accepts.  When several wake
        # for one connection, all but one get EAGAIN instead of blocking.
        sock.setblocking(False)
        self._signals = SignalRecorder(PARENT_SIGNALS)
        try:
            self._signals.install()
            self._supervise(sock)
        finally:
            try:
                self._stop_children()
            finally:
                sock.settimeout(old_timeout)
                self._signals.close()
                self._signals = None
        if self._hupReceived:
            log.info('prefork server stopped; reload requested')
        else:
            log.info('prefork server stopped')
        return self._hupReceived

    def shutdown(self):
        """Stop a running ``run()``, which then returns False.

        Meant for a ``run()`` in another thread, which receives no
        signals.  It may be called from any thread of the parent process.
        """
        log.info('shutdown() called: stopping')
        self._keep_going = False
        signals = self._signals
        if signals is not None:
            signals.wake()

    def _supervise(self, sock):
        while True:
            for signum in self._signals.take():
                self._handle_signal(signum)
            if not self._keep_going:
                return
            self._reap_children()
            self._adjust_pool(sock)
            readable = wait_readable(self._wait_fds(), self._supervise_timeout())
            self._read_ready_children(readable)

    def _handle_signal(self, signum):
        if signum == signal.SIGHUP:
            self._handle_sighup()
        elif signum in (signal.SIGINT, signal.SIGTERM):
            self._handle_stop_signal(signum)
        elif signum == signal.SIGUSR1:
            self._handle_sigusr1()
        # SIGCHLD only wakes the loop, which reaps next.

    def _handle_sighup(self):
        if self._keep_going:
            log.info('SIGHUP received: stopping the children to reload')
        self._keep_going = False
        self._hupReceived = True

    def _handle_stop_signal(self, signum):
        if self._keep_going:
            log.info('%s received: stopping', _SIGNAL_NAMES[signum])
        self._keep_going = False

    def _handle_sigusr1(self):
        idle = [child for child in self._children.values() if child.spare]
        log.info('SIGUSR1 received: replacing %d idle children', len(idle))
        for child in idle:
            self._ask_to_quit(child)

    def _wait_fds(self):
        fds = [self._signals.wakeup_fd]
        for child in self._children.values():
            if child.sock is not None:
                fds.append(child.sock.fileno())
        return fds

    def _supervise_timeout(self):
        timeout = SUPERVISE_INTERVAL
        if self._spawn_blocked():
            timeout = min(timeout, self._next_spawn_time - monotonic())
        return max(timeout, 0.0)

    def _spawn_blocked(self):
        return self._next_spawn_time > monotonic()

    def _adjust_pool(self, sock):
        """Fork children up to minSpare idle ones, or ask extra idle ones to quit."""
        spare = sorted((child for child in self._children.values()
                        if child.spare), key=lambda child: child.age)
        if len(spare) < self._minSpare:
            room = self._maxChildren - len(self._children)
            for _ in range(min(self._minSpare - len(spare), room)):
                if self._spawn_blocked() or not self._spawn_child(sock):
                    break
        elif len(spare) > self._maxSpare:
            for child in spare[:len(spare) - self._maxSpare]:
                log.debug('asking idle child %d to quit: more than '
                          'maxSpare=%d idle children', child.pid, self._maxSpare)
                self._ask_to_quit(child)

    def _spawn_child(self, sock):
        """Fork one child; return False if fork() failed."""
        parent_end, child_end = socket.socketpair()
        for end in (parent_end, child_end):
            set_cloexec(end.fileno())
        old_mask = _block_signals()
        try:
            pid = os.fork()
        except OSError as error:
            _restore_signal_mask(old_mask)
            close_quietly(parent_end)
            close_quietly(child_end)
            log.error('fork() failed: %s', describe_error(error))
            self._delay_next_spawn()
            return False
        if pid == 0:
            self._child_main(sock, parent_end, child_end, old_mask)
        _restore_signal_mask(old_mask)
        close_quietly(child_end)
        parent_end.setblocking(False)
        self._spawn_count += 1
        self._children[pid] = _Child(pid, parent_end, self._spawn_count)
        log.debug('forked child %d', pid)
        return True

    def _delay_next_spawn(self):
        self._start_failures += 1
        delay = min(START_BACKOFF_MAX,
                    START_BACKOFF_FIRST * 2 ** (self._start_failures - 1))
        self._next_spawn_time = monotonic() + delay
        return delay

    def _ask_to_quit(self, child):
        if child.quitting:
            return
        child.quitting = True
        if child.sock is None:
            return
        try:
            child.sock.send(MSG_QUIT)
        except (socket.error, OSError) as error:
            # The child is gone or going; reaping takes care of it.
            log.debug('could not send quit to child %d: %s',
                      child.pid, describe_error(error))

    def _read_ready_children(self, readable):
        if not readable:
            return
        readable = set(readable)
        for child in list(self._children.values()):
            if child.sock is not None and child.sock.fileno() in readable:
                self._read_child_messages(child)

    def _read_child_messages(self, child):
        try:
            data = child.sock.recv(256)
        except (socket.error, OSError) as error:
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return
            data = b''
        if not data:
            # The child exited or is exiting, and waitpid() returns its status.
            close_quietly(child.sock)
            child.sock = None
            return
        for index in range(len(data)):
            self._handle_child_message(child, data[index:index + 1])

    def _handle_child_message(self, child, message):
        if message == MSG_BUSY:
            child.busy = True
            self.served_connections += 1
        elif message == MSG_IDLE:
            child.busy = False
        else:
            log.warning('child %d sent an unknown message %r; ignored',
                        child.pid, message)
            return
        if not child.ready:
            child.ready = True
            self._start_failures = 0

    def _reap_children(self):
        """Collect every exited child without blocking."""
        while True:
            try:
                pid, status = retry_on_eintr(os.waitpid, -1, os.WNOHANG)
            except OSError as error:
                if error.errno == errno.ECHILD:
                    return
                raise
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is None:
                # Another part of the program started this process.
                log.debug('reaped process %d, which is not a child of this '
                          'server (%s)', pid, describe_status(status))
                continue
            self._child_exited(child, status)

    def _child_exited(self, child, status):
        if child.sock is not None:
            close_quietly(child.sock)
            child.sock = None
        description = describe_status(status)
        exit_status = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        clean = exit_status == EXIT_OK
        failed_start = not child.ready or exit_status == EXIT_START_FAILED
        if clean or (child.quitting and not self._keep_going):
            # Expected: asked to quit, maxRequests reached, or killed after
            # the grace period (which _kill_children logs).
            log.debug('child %d exited (%s)', child.pid, description)
        elif failed_start:
            delay = self._delay_next_spawn()
            log.warning('child %d failed to start (%s); next fork in %.1f s',
                        child.pid, description, delay)
        elif exit_status == EXIT_CRASHED:
            # A child that crashes at once in every attempt, for example on
            # a broken listening socket, must not make the parent fork in a
            # tight loop.
            delay = self._delay_next_spawn()
            log.warning('child %d crashed (%s); next fork in %.1f s',
                        child.pid, description, delay)
        elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            log.warning('child %d exited unexpectedly (%s); the kernel kills '
                        'with SIGKILL when memory runs out', child.pid,
                        description)
        else:
            log.warning('child %d exited unexpectedly (%s)', child.pid,
                        description)

    def _stop_children(self):
        """Ask every child to quit, wait gracePeriod, then SIGKILL the rest."""
        if not self._children:
            return
        log.info('stopping %d children; waiting up to %.1f s for them to '
                 'exit', len(self._children), self.gracePeriod)
        for child in self._children.values():
            self._ask_to_quit(child)
        deadline = monotonic() + self.gracePeriod
        while self._children:
            self._reap_children()
            remaining = deadline - monotonic()
            if not self._children or remaining <= 0:
                break
            if any(signum in (signal.SIGINT, signal.SIGTERM)
                   for signum in self._signals.take()):
                log.info('second stop signal received: killing children now')
                break
            readable = wait_readable(self._wait_fds(),
                                     min(remaining, EXIT_POLL_INTERVAL))
            self._read_ready_children(readable)
        self._kill_children()

    def _kill_children(self):
        for child in self._children.values():
            log.warning('child %d did not exit within the %.1f s grace '
                        'period; sending SIGKILL', child.pid, self.gracePeriod)
            try:
                os.kill(child.pid, signal.SIGKILL)
            except OSError as error:
                if error.errno != errno.ESRCH:
                    raise
        deadline = monotonic() + KILL_REAP_TIMEOUT
        while self._children and monotonic() < deadline:
            self._reap_children()
            if self._children:
                wait_readable([self._signals.wakeup_fd], EXIT_POLL_INTERVAL)
                self._signals.take()
        for child in self._children.values():
            if child.sock is not None:
                close_quietly(child.sock)
            log.error('child %d still not reaped %.1f s after SIGKILL',
                      child.pid, KILL_REAP_TIMEOUT)
        self._children = {}

    # Child.

    @property
    def stop_requested(self):
        """Whether this child was asked to stop, by signal or by the parent.

        Reading it takes pending signals and messages without blocking.
        Always False in the parent.
        """
        if self._parent_sock is None:
            return False
        if not self._quit_received:
            self._check_for_stop()
        return self._quit_received

    def _check_for_stop(self):
        for signum in self._child_signals.take():
            if signum in CHILD_STOP_SIGNALS:
                log.debug('child %d: %s received', os.getpid(),
                          _SIGNAL_NAMES[signum])
                self._quit_received = True
        fd = self._parent_sock.fileno()
        while wait_readable([fd], 0):
            try:
                data = self._parent_sock.recv(64)
            except (socket.error, OSError) as error:
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                data = b''
            if not data:
                log.debug('child %d: the parent is gone', os.getpid())
                self._quit_received = True
                return
            if MSG_QUIT in data:
                self._quit_received = True

    def _child_main(self, sock, parent_end, child_end, old_mask):
        """Run the child and exit; never returns into the parent's code."""
        status = EXIT_CRASHED
        try:
            close_quietly(parent_end)
            self._become_child(child_end)
            _restore_signal_mask(old_mask)
            status = self._run_child(sock)
        except SystemExit as error:
            log.warning('child %d: sys.exit(%r) called; exiting',
                        os.getpid(), error.code)
        except BaseException:
            try:
                log.exception('child %d failed', os.getpid())
            except BaseException:
                pass
        finally:
            _flush_std_streams()
            # os._exit, so the parent's atexit handlers and finally blocks
            # do not run a second time in the child.
            os._exit(status)

    def _become_child(self, parent_sock):
        """Drop the parent's state that the child inherited from fork()."""
        if self._signals is not None:
            self._signals.close()  # restores the handlers run() replaced
            self._signals = None
        for child in self._children.values():
            if child.sock is not None:  # None once its end of file was read
                close_quietly(child.sock)
        self._children = {}
        self.served_connections = 0
        self._keep_going = False
        self._child_signals = SignalRecorder(CHILD_SIGNALS)
        if current_thread_is_main():
            self._child_signals.install()
        parent_sock.settimeout(NOTIFY_TIMEOUT)
        self._parent_sock = parent_sock
        self._quit_received = False
        self.wakeup_fds = (self._child_signals.wakeup_fd, parent_sock.fileno())

    def _run_child(self, sock):
        try:
            self._child_init()
        except Exception:
            log.exception('child %d: _child_init() failed', os.getpid())
            return EXIT_START_FAILED
        log.debug('child %d ready', os.getpid())
        self._notify_parent(MSG_IDLE)
        self._serve_connections(sock)
        return EXIT_OK

    def _child_done(self):
        if self.stop_requested:
            return True
        if self._maxRequests and self.served_connections >= self._maxRequests:
            log.debug('child %d served maxRequests=%d connections; exiting',
                      os.getpid(), self._maxRequests)
            return True
        return False

    def _serve_connections(self, sock):
        listen_fd = sock.fileno()
        while not self._child_done():
            readable = wait_readable((listen_fd,) + self.wakeup_fds,
                                     IDLE_POLL_INTERVAL)
            if listen_fd not in readable:
                continue  # a stop request, a timeout or an ignored signal
            accepted = self._accept(sock)
            if accepted is None:
                continue
            self.served_connections += 1
            self._notify_parent(MSG_BUSY)
            self._handle_connection(*accepted)
            if not self._child_done():
                self._notify_parent(MSG_IDLE)

    def _accept(self, sock):
        try:
            return sock.accept()
        except (socket.error, OSError) as error:
            if error.errno in _RETRY_ACCEPT_ERRNOS:
                # Another child took the connection, or the client left.
                return None
            if error.errno not in _DELAY_ACCEPT_ERRNOS:
                raise
            log.error('child %d: accept() failed: %s; retrying in %.1f s',
                      os.getpid(), describe_error(error), ACCEPT_RETRY_DELAY)
            wait_readable(self.wakeup_fds, ACCEPT_RETRY_DELAY)
            return None

    def _handle_connection(self, client, address):
        """Run one job; its exceptions are logged and do not end the child."""
        try:
            client.settimeout(self._sockTimeout or None)
            if not self._isClientAllowed(address):
                log.debug('connection from %s not allowed; closed',
                          describe_peer(address))
                return
            job = self._jobClass(client, address, *self._jobArgs)
            job.run()
        except Exception as error:
            if is_peer_loss(error):
                log.debug('connection from %s lost: %s',
                          describe_peer(address), describe_error(error))
            else:
                log.exception('job for the connection from %s failed',
                              describe_peer(address))
        finally:
            close_quietly(client)

    def _notify_parent(self, message):
        try:
            self._parent_sock.sendall(message)
        except (socket.error, OSError) as error:
            # A parent that is gone, or reads nothing for NOTIFY_TIMEOUT
            # seconds, cannot manage this child any more.
            log.debug('child %d: could not notify the parent (%s); stopping',
                      os.getpid(), describe_error(error))
            self._quit_received = True


def _check_count(name, value, minimum):
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise TypeError('%s must be an integer, not %r' % (name, value))
    if count < minimum:
        raise ValueError('%s must be at least %d, not %r'
                         % (name, minimum, value))
    return count


def _check_seconds(name, value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise TypeError('%s must be a number of seconds, not %r'
                        % (name, value))
    if seconds < 0:
        raise ValueError('%s must be 0 or more seconds, not %r'
                         % (name, value))
    return seconds
