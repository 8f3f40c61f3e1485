#!/usr/bin/env python3
"""Write-availability probe for bench/bench.py.

Inserts one row per autocommit transaction every --interval seconds into whichever node is the
primary (libpq multi-host connection string with target_session_attrs=read-write, so the probe
does not depend on either implementation's REST API), and logs every attempt, one line each:

    id <TAB> t_start <TAB> t_end <TAB> ok(1/0) <TAB> port <TAB> error

Times are CLOCK_MONOTONIC seconds (time.monotonic(), comparable across processes on Linux).
`id` is the inserted id, or 0 for a failed connection attempt. Stops on SIGTERM/SIGINT or after
--max-seconds, whichever comes first. Needs psycopg 3 (the Patroni virtualenv has it).
"""
import argparse
import signal
import sys
import time

import psycopg

STOP = False


def _stop(_sig, _frm):
    global STOP
    STOP = True


def clean(err):
    text = str(err).strip().splitlines()
    text = text[0] if text else type(err).__name__
    return text.replace("\t", " ")[:160]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True, help="comma-separated PostgreSQL ports on 127.0.0.1")
    ap.add_argument("--password", required=True)
    ap.add_argument("--table", default="bench_writes")
    ap.add_argument("--start-id", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.015)
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    ports = [p for p in a.ports.split(",") if p]
    conninfo = psycopg.conninfo.make_conninfo(
        host=",".join(["127.0.0.1"] * len(ports)),
        port=",".join(ports),
        user="postgres",
        password=a.password,
        dbname="postgres",
        connect_timeout=2,
        target_session_attrs="read-write",
        options="-c statement_timeout=2000",
        application_name="pgha-bench-writer",
    )
    sql = f"INSERT INTO {a.table}(id) VALUES (%s)"
    deadline = time.monotonic() + a.max_seconds
    next_at = time.monotonic()
    conn = None
    port = ""
    next_id = a.start_id
    with open(a.out, "w", buffering=1) as out:
        while not STOP and time.monotonic() < deadline:
            t0 = time.monotonic()
            if conn is None:
                try:
                    conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
                    port = str(conn.info.port)
                except Exception as e:  # noqa: BLE001 - any failure is an outcome to log
                    conn = None
                    out.write(f"0\t{t0:.6f}\t{time.monotonic():.6f}\t0\t\tconnect: {clean(e)}\n")
            if conn is not None:
                rid = next_id
                next_id += 1
                t0 = time.monotonic()
                try:
                    conn.execute(sql, (rid,))
                    out.write(f"{rid}\t{t0:.6f}\t{time.monotonic():.6f}\t1\t{port}\t\n")
                except Exception as e:  # noqa: BLE001
                    out.write(f"{rid}\t{t0:.6f}\t{time.monotonic():.6f}\t0\t{port}\t{clean(e)}\n")
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
            next_at += a.interval
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            else:
                next_at = now  # fell behind (slow connect): do not burst to catch up
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
