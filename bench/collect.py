"""Benchmark of the CloudTrail backfill against the local LookupEvents endpoint at the real
rate limit (2 requests per second per account-region); every figure is measured in this run.

    python -m bench.collect [--events 1000] [--regions 2]

Prints, per run: events collected per API call during backfill (the API's ceiling is 50 a
page) and the time to backfill against the theoretical minimum (pages / 2 per second, in
parallel across regions).
"""

from __future__ import annotations

import argparse
import math
import time

import boto3

from collectors.cloudtrail import RETRY_CONFIG, CloudTrailSource, RateLimiter, RegionPoller
from tests.cloudtrail_endpoint import DEFAULT_ACCOUNT, CloudTrailEndpoint
from tests.conftest import make_record

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1", "us-west-2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000, help="events per region")
    parser.add_argument("--regions", type=int, default=2)
    args = parser.parse_args()
    now = time.time()
    regions = REGIONS[: args.regions]
    with CloudTrailEndpoint(rate_per_second=2.0, burst=2) as endpoint:
        for region in regions:
            # All older than the overlap window, so every page but the first call is backfill.
            step = 2000 / args.events  # all within the one-hour look-back
            endpoint.add(
                make_record(
                    f"{region}-{i}",
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1300 - i * step)),
                    awsRegion=region,
                )
                for i in range(args.events)
            )
        pollers = [
            RegionPoller(
                DEFAULT_ACCOUNT,
                region,
                boto3.client(
                    "cloudtrail",
                    region_name=region,
                    endpoint_url=endpoint.url,
                    aws_access_key_id="AKIDBENCH",
                    aws_secret_access_key="x",
                    config=RETRY_CONFIG,
                ),
                RateLimiter(),
                lookback=3600,
                backfill_pages=10_000,
            )
            for region in regions
        ]
        source = CloudTrailSource(pollers)
        started = time.perf_counter()
        records = source.poll(now)
        elapsed = time.perf_counter() - started
        source.close()
        calls = sum(p.health.api_calls for p in pollers)
        throttled = sum(p.health.throttles for p in pollers)
        live_calls = len(pollers)  # each poller's overlap re-read comes back empty in one call
    pages = math.ceil(args.events / 50)
    minimum = (pages + 1 - 2) / 2.0  # per region, in parallel: the first two ride the burst
    print(f"backfill of {args.events:,} events in each of {len(regions)} regions at 2 requests/s per region")
    print(f"  events collected:            {len(records):,}")
    print(f"  API calls:                   {calls:,} ({throttled} throttled)")
    print(f"  events per backfill call:    {len(records) / max(1, calls - live_calls):.1f} (ceiling 50)")
    print(f"  time:                        {elapsed:.1f} s; theoretical minimum {minimum:.1f} s")
    print(f"  time over minimum:           {elapsed / minimum:.2f}x")


if __name__ == "__main__":
    main()
