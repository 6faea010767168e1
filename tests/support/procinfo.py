"""Resource counts of a process and its descendants, read from /proc (Linux).

Tests compare these counts before and after a burst of hang-ups to find
leaked threads, file descriptors, child processes and sockets.  A process
that exits between two reads is counted as having nothing.
"""

from __future__ import absolute_import, print_function

import os
import time

# TCP states as /proc/net/tcp writes them (hex), from include/net/tcp_states.h.
TCP_STATES = {
    '01': 'ESTABLISHED',
    '02': 'SYN_SENT',
    '03': 'SYN_RECV',
    '04': 'FIN_WAIT1',
    '05': 'FIN_WAIT2',
    '06': 'TIME_WAIT',
    '07': 'CLOSE',
    '08': 'CLOSE_WAIT',
    '09': 'LAST_ACK',
    '0A': 'LISTEN',
    '0B': 'CLOSING',
    '0C': 'NEW_SYN_RECV',
}

# Upper bound on the descendants walked, so a fork bomb cannot stall a test.
MAX_TREE_SIZE = 1000


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:  # The process exited, or the entry is not readable.
        return []


def thread_count(pid):
    """Return the number of threads of ``pid``, 0 if it does not exist."""
    return len(_listdir('/proc/%d/task' % pid))


def fd_count(pid):
    """Return the number of open file descriptors of ``pid``, 0 if it does not exist."""
    return len(_listdir('/proc/%d/fd' % pid))


def _parent_pid(pid):
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _stat_fields(pid):
    """Return the /proc/PID/stat fields after the command name, or None."""
    try:
        with open('/proc/%d/stat' % pid) as stat_file:
            stat = stat_file.read()
    except (IOError, OSError):
        return None
    # The command name in brackets may contain spaces and ')', so the fields
    # are counted from the last ')'.  Field 0 is then the state, 1 the parent
    # pid, 2 the process group id and 3 the session id.
    return stat[stat.rfind(')') + 2 :].split()


def _process_state(pid):
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def session_pids(sid):
    """Return the sorted pids of live (not zombie) processes in session ``sid``.

    A process started with ``os.setsid`` keeps every descendant in its
    session unless one calls ``setsid`` itself, even after they change
    process group or lose their parent.
    """
    members = []
    for entry in _listdir('/proc'):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields and int(fields[3]) == sid and fields[0] != 'Z':
            members.append(int(entry))
    return sorted(members)


def child_pids(pid):
    """Return the sorted pids whose parent is ``pid`` (direct children only)."""
    children = []
    for entry in _listdir('/proc'):
        if not entry.isdigit():
            continue
        if _parent_pid(int(entry)) == pid:
            children.append(int(entry))
    return sorted(children)


def descendant_pids(pid):
    """Return the sorted pids of all descendants of ``pid``, not ``pid`` itself."""
    parents = {}
    for entry in _listdir('/proc'):
        if entry.isdigit():
            parent = _parent_pid(int(entry))
            if parent is not None:
                parents.setdefault(parent, []).append(int(entry))
    found = []
    pending = [pid]
    while pending and len(found) < MAX_TREE_SIZE:
        current = pending.pop()
        for child in parents.get(current, ()):
            found.append(child)
            pending.append(child)
    return sorted(found)


def _socket_inodes(pid):
    inodes = set()
    fd_dir = '/proc/%d/fd' % pid
    for entry in _listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, entry))
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[len('socket:[') : -1])
    return inodes


def _tcp_inode_states(pid):
    """Map socket inode to TCP state name for the network namespace of ``pid``."""
    states = {}
    for name in ('tcp', 'tcp6'):
        try:
            with open('/proc/%d/net/%s' % (pid, name)) as table:
                lines = table.readlines()[1:]
        except (IOError, OSError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                states[fields[9]] = TCP_STATES.get(fields[3], fields[3])
    return states


def listening_ports(pid):
    """Return the set of TCP ports (IPv4 and IPv6) on which ``pid`` has a listening socket."""
    inodes = _socket_inodes(pid)
    ports = set()
    for name in ('tcp', 'tcp6'):
        try:
            with open('/proc/%d/net/%s' % (pid, name)) as table:
                lines = table.readlines()[1:]
        except (IOError, OSError):
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == '0A' and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(':', 1)[1], 16))
    return ports


def _unix_inodes(pid):
    try:
        with open('/proc/%d/net/unix' % pid) as table:
            lines = table.readlines()[1:]
    except (IOError, OSError):
        return set()
    return set(line.split()[6] for line in lines if len(line.split()) > 6)


def socket_states(pid):
    """Count the sockets of ``pid`` by kind and TCP state.

    Returns a dict such as ``{'LISTEN': 1, 'ESTABLISHED': 2,
    'CLOSE_WAIT': 1, 'UNIX': 3, 'OTHER': 0}``, with every TCP state name
    present (0 when absent).  ``UNIX`` counts Unix domain sockets and
    ``OTHER`` every other socket (UDP, netlink...).
    """
    counts = dict((state, 0) for state in TCP_STATES.values())
    counts['UNIX'] = 0
    counts['OTHER'] = 0
    inodes = _socket_inodes(pid)
    if not inodes:
        return counts
    tcp_states = _tcp_inode_states(pid)
    unix_inodes = _unix_inodes(pid)
    for inode in inodes:
        if inode in tcp_states:
            counts[tcp_states[inode]] += 1
        elif inode in unix_inodes:
            counts['UNIX'] += 1
        else:
            counts['OTHER'] += 1
    return counts


def process_stats(pid):
    """Return threads, fds, state and socket counts of one process."""
    return {
        'threads': thread_count(pid),
        'fds': fd_count(pid),
        'state': _process_state(pid),
        'sockets': socket_states(pid),
    }


def tree_stats(pid):
    """Sum the resources of ``pid`` and all its descendants.

    Returns ``{'threads': N, 'fds': N, 'children': [pids of all
    descendants], 'sockets': {state: N}, 'processes': {pid:
    process_stats(pid)}}``.  The totals cover ``pid`` and its descendants.
    """
    pids = [pid] + descendant_pids(pid)
    processes = {}
    sockets = {}
    for member in pids:
        stats = process_stats(member)
        processes[member] = stats
        for state, count in stats['sockets'].items():
            sockets[state] = sockets.get(state, 0) + count
    return {
        'threads': sum(stats['threads'] for stats in processes.values()),
        'fds': sum(stats['fds'] for stats in processes.values()),
        'children': pids[1:],
        'sockets': sockets,
        'processes': processes,
    }


def wait_until(predicate, timeout, interval=0.05):
    """Call ``predicate()`` until it returns a true value or ``timeout`` seconds pass.

    Returns the last value returned, true or not, so a caller can assert on it
    and print it.  ``predicate`` is called at least once and at most
    ``timeout / interval + 2`` times.
    """
    deadline = time.time() + timeout
    max_calls = int(timeout / interval) + 2
    value = predicate()
    calls = 1
    while not value and calls < max_calls and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
        calls += 1
    return value
