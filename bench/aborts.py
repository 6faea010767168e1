"""Benchmark: HTTP clients that abort through nginx, against each flup server.

For each server (this project's threaded server with and without
multiplexing, prefork with and without ``multiplexed=True``, single, and
upstream flup 1.0.3's threaded and prefork servers), the script starts the
server behind a fresh nginx and then:

1. measures throughput with wrk through nginx (threaded servers only,
   before any abort, so a leak cannot skew it);
2. records threads, open descriptors, RSS and CLOSE_WAIT sockets of the
   server's process tree before, during and after ``--aborts`` HTTP
   clients that each request a route whose application sleeps
   ``--route-seconds`` and hang up after ``--client-timeout`` (as
   ``curl -m 0.05`` does);
3. sends ``--later`` normal requests and counts the answered ones;
4. sends SIGTERM and records whether the server exited within 10 s.

Results go to ``--out`` (default ``bench/results``) as JSON, and a PNG of
thread count against aborts served to ``bench/aborts_threads.png``.  A
table is printed at the end.  Every connection goes to 127.0.0.1.

Run it with the bench virtualenv, which has matplotlib::

    python3 -m venv bench/.venv
    bench/.venv/bin/pip install matplotlib six
    bench/.venv/bin/python bench/aborts.py --aborts 10000
"""

from __future__ import absolute_import, print_function

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, REPO_ROOT)

from tests.support import procinfo, upstream, webservers  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402

WRK = '/usr/bin/wrk'

# (name, serve.py model, multiplexed, whether it runs upstream flup)
SERVERS = [
    ('ours threaded', 'threaded', False, False),
    ('ours threaded mpx', 'threaded', True, False),
    ('ours prefork', 'prefork', False, False),
    ('ours prefork mpx', 'prefork', True, False),
    ('ours single', 'single', False, False),
    ('upstream threaded', 'threaded', False, True),
    ('upstream threaded mpx', 'threaded', True, True),
    ('upstream prefork', 'prefork', False, True),
]

# Seconds the server gets to exit after SIGTERM.
SIGTERM_TIMEOUT = 10.0

QUIET_SERVE = os.path.join(BENCH_DIR, 'quiet_serve.py')


class BenchServer(ServerProcess):
    """A ServerProcess started through quiet_serve.py, which logs at the
    level of ``FLUP_BENCH_LOG_LEVEL`` instead of DEBUG."""

    def command(self, bind_spec):
        argv = ServerProcess.command(self, bind_spec)
        argv[1] = QUIET_SERVE
        return argv

# Samples of the resource counts taken during the aborts.
SAMPLES = 40


def rss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (IOError, OSError):
        pass
    return 0


def measure(server):
    """Return threads, fds, RSS (KiB), CLOSE_WAIT sockets and processes of
    the server's tree."""
    stats = procinfo.tree_stats(server.pid)
    pids = [server.pid] + stats['children']
    return {
        'threads': stats['threads'],
        'fds': stats['fds'],
        'rss_kib': sum(rss_kib(pid) for pid in pids),
        'close_wait': stats['sockets'].get('CLOSE_WAIT', 0),
        'processes': len(pids),
    }


def settled(server, max_seconds):
    """Measure until two samples one second apart agree, or ``max_seconds``."""
    previous = measure(server)
    for _ in range(int(max_seconds)):
        time.sleep(1.0)
        current = measure(server)
        if (current['threads'], current['fds']) == (previous['threads'],
                                                    previous['fds']):
            return current
        previous = current
    return previous


def run_wrk(url, seconds, connections):
    """Run wrk on ``url``; return its requests per second (None if its
    output has none) and its count of non-2xx responses."""
    output = subprocess.check_output(
        [WRK, '-t2', '-c%d' % connections, '-d%ds' % seconds, url],
        stderr=subprocess.STDOUT).decode('utf-8', 'replace')
    match = re.search(r'Requests/sec:\s+([0-9.]+)', output)
    non_2xx = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', output)
    return {
        'requests_per_second': float(match.group(1)) if match else None,
        'non_2xx': int(non_2xx.group(1)) if non_2xx else 0,
    }


def abort_storm(url, total, concurrency, client_timeout, on_progress):
    """Run ``total`` aborting clients, ``concurrency`` at a time."""
    lock = threading.Lock()
    done = [0]
    errors = [0]

    def worker():
        while True:
            with lock:
                if done[0] + errors[0] >= total:
                    return
                done[0] += 1
            try:
                webservers.abort_http(url, client_timeout)
            except (IOError, OSError):
                with lock:
                    errors[0] += 1
                    done[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.daemon = True
        thread.start()
    step = max(total // SAMPLES, 1)
    next_sample = 0
    deadline = time.time() + total * (client_timeout + 1.0) + 60
    while any(thread.is_alive() for thread in threads):
        if time.time() > deadline:
            break
        if done[0] >= next_sample:
            on_progress(done[0])
            next_sample += step
        time.sleep(0.02)
    on_progress(done[0])
    return done[0], errors[0]


def later_requests(url, count):
    answered = 0
    for _ in range(count):
        try:
            status = webservers.http_get(url, timeout=5.0)[0]
        except (IOError, OSError):
            continue
        if status == 200:
            answered += 1
    return answered


def bench_one(name, model, multiplexed, target, args, workdir):
    kw = {'maxChildren': args.prefork_children} if model == 'prefork' else {}
    server = BenchServer(model, 'sleep', multiplexed=multiplexed, kw=kw,
                         target=target, python=args.server_python,
                         env={'FLUP_BENCH_LOG_LEVEL': args.log_level},
                         workdir=os.path.join(workdir, name.replace(' ', '-')))
    if not os.path.isdir(server.workdir):
        os.makedirs(server.workdir)
    server.start()
    nginx = webservers.Nginx(fastcgi='%s:%d' % server.address,
                             workdir=os.path.join(server.workdir, 'nginx'))
    nginx.start()
    result = {'name': name, 'model': model, 'multiplexed': multiplexed,
              'upstream': target is not None, 'samples': []}
    try:
        fast_url = nginx.url + '/?t=0'
        slow_url = nginx.url + '/?t=%s' % args.route_seconds
        later_requests(fast_url, 3)
        if model == 'threaded' and args.wrk_seconds:
            result['wrk'] = run_wrk(fast_url, args.wrk_seconds,
                                    args.wrk_connections)
        result['before'] = settled(server, 5)
        started = time.time()

        def sample(done):
            counts = measure(server)
            counts['aborts'] = done
            counts['seconds'] = round(time.time() - started, 2)
            result['samples'].append(counts)

        done, errors = abort_storm(slow_url, args.aborts, args.concurrency,
                                   args.client_timeout, sample)
        result['aborts'] = done
        result['client_errors'] = errors
        result['storm_seconds'] = round(time.time() - started, 1)
        result['during_max'] = dict(
            (key, max(s[key] for s in result['samples']))
            for key in ('threads', 'fds', 'rss_kib', 'close_wait'))
        result['after'] = settled(server, args.settle)
        result['later_answered'] = later_requests(fast_url, args.later)
        result['later_sent'] = args.later
    finally:
        nginx.stop()
        result['sigterm_obeyed'] = server.stop(timeout=SIGTERM_TIMEOUT)
    return result


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for result in results:
        xs = [s['aborts'] for s in result['samples']]
        ys = [s['threads'] for s in result['samples']]
        style = '--' if result['upstream'] else '-'
        axes.plot(xs, ys, style, label=result['name'], linewidth=1.6)
    axes.set_xlabel('aborted HTTP requests served (through nginx)')
    axes.set_ylabel('threads in the server process tree')
    axes.set_title('Threads while clients abort: upstream flup 1.0.3 (dashed) '
                   'and this fork (solid)')
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def format_table(results):
    header = ('| server | aborts | threads before / max during / after '
              '| fds before / max / after | RSS MiB before / max / after '
              '| CLOSE_WAIT after | later requests answered | SIGTERM obeyed '
              '| wrk req/s |')
    lines = [header, '|' + ' --- |' * 9]
    for r in results:
        before, during, after = r['before'], r['during_max'], r['after']
        wrk = r.get('wrk', {}).get('requests_per_second')
        lines.append('| %s | %d | %d / %d / %d | %d / %d / %d | %.0f / %.0f / %.0f '
                     '| %d | %d of %d | %s | %s |' % (
                         r['name'], r['aborts'],
                         before['threads'], during['threads'], after['threads'],
                         before['fds'], during['fds'], after['fds'],
                         before['rss_kib'] / 1024.0, during['rss_kib'] / 1024.0,
                         after['rss_kib'] / 1024.0,
                         after['close_wait'], r['later_answered'], r['later_sent'],
                         'yes' if r['sigterm_obeyed'] else 'no',
                         '%.0f' % wrk if wrk else '-'))
    return '\n'.join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--aborts', type=int, default=10000,
                        help='aborting HTTP clients per server (default 10000)')
    parser.add_argument('--concurrency', type=int, default=10,
                        help='clients running at once (default 10)')
    parser.add_argument('--route-seconds', type=float, default=0.2,
                        help='seconds the aborted route sleeps (default 0.2)')
    parser.add_argument('--client-timeout', type=float, default=0.05,
                        help='seconds each client waits before it hangs up '
                             '(default 0.05)')
    parser.add_argument('--settle', type=float, default=30.0,
                        help='max seconds to wait for counts to settle after '
                             'the aborts (default 30)')
    parser.add_argument('--later', type=int, default=20,
                        help='normal requests sent after the aborts (default 20)')
    parser.add_argument('--wrk-seconds', type=int, default=10,
                        help='seconds of wrk per threaded server; 0 skips wrk '
                             '(default 10)')
    parser.add_argument('--wrk-connections', type=int, default=16,
                        help='wrk connections (default 16)')
    parser.add_argument('--prefork-children', type=int, default=50,
                        help='maxChildren of the prefork servers (default 50, '
                             'the prefork default)')
    parser.add_argument('--servers', default=','.join(s[0] for s in SERVERS),
                        help='comma-separated server names to run (default all)')
    parser.add_argument('--log-level', default='WARNING',
                        choices=['DEBUG', 'INFO', 'WARNING', 'ERROR'],
                        help='log level of the servers (default WARNING; the '
                             'tests run them at DEBUG)')
    parser.add_argument('--server-python', default=sys.executable,
                        help='interpreter that runs the servers (default this one)')
    parser.add_argument('--out', default=os.path.join(BENCH_DIR, 'results'),
                        help='folder for the JSON results and server logs')
    parser.add_argument('--png', default=os.path.join(BENCH_DIR, 'aborts_threads.png'),
                        help='path of the PNG plot')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    wanted = [name.strip() for name in args.servers.split(',')]
    unknown = set(wanted) - set(s[0] for s in SERVERS)
    if unknown:
        raise SystemExit('unknown server name(s): %s; expected some of: %s'
                         % (', '.join(sorted(unknown)),
                            ', '.join(s[0] for s in SERVERS)))
    stamp = datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ')
    workdir = os.path.join(args.out, stamp)
    os.makedirs(workdir)
    upstream_target = None
    results = []
    for name, model, multiplexed, is_upstream in SERVERS:
        if name not in wanted:
            continue
        target = None
        if is_upstream:
            if upstream_target is None:
                upstream_target = upstream.install_upstream(python=args.server_python)
            target = upstream_target
        print('%s: %d aborts...' % (name, args.aborts), file=sys.stderr)
        result = bench_one(name, model, multiplexed, target, args, workdir)
        results.append(result)
        print('  after: %r, later %d of %d, SIGTERM obeyed %s'
              % (result['after'], result['later_answered'], result['later_sent'],
                 result['sigterm_obeyed']), file=sys.stderr)
    document = {
        'command': ' '.join([os.path.basename(sys.executable)] + sys.argv),
        'date_utc': stamp,
        'machine': {'cpus': os.cpu_count() if hasattr(os, 'cpu_count') else None,
                    'platform': platform.platform(),
                    'python': platform.python_version()},
        'args': vars(args),
        'results': results,
    }
    with open(os.path.join(workdir, 'results.json'), 'w') as output:
        json.dump(document, output, indent=1, sort_keys=True)
    plot(results, args.png)
    print(format_table(results))
    print('\nresults: %s\nplot: %s' % (os.path.join(workdir, 'results.json'),
                                       args.png))
    return 0


if __name__ == '__main__':
    sys.exit(main())
