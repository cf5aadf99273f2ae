"""The commands about the daemon: breakers, breaker reset, status."""

from __future__ import annotations

import time

import click

from dukat.cli._base import Settings, print_rich, run_main, settings
from dukat.cli._follow import EXIT_OK
from dukat.cli._tables import breakers_table, status_table


@click.command()
@settings
def breakers(settings: Settings) -> None:
    """List the daemon's circuit breakers."""

    async def main() -> int:
        async with settings.client() as client:
            found = await client.breakers()
        print_rich(breakers_table(found))
        return EXIT_OK

    run_main(main)


@click.group()
def breaker() -> None:
    """Act on one circuit breaker."""


@breaker.command()
@click.argument("name")
@settings
def reset(settings: Settings, name: str) -> None:
    """Close the breaker NAME and clear its counters, for every process using it."""

    async def main() -> int:
        async with settings.client() as client:
            await client.breaker(name).reset()
        click.echo(f"breaker {name} reset: closed")
        return EXIT_OK

    run_main(main)


@click.command()
@settings
def status(settings: Settings) -> None:
    """Show the daemon: version, uptime, addresses, capacity in use, workers, breakers."""

    async def main() -> int:
        async with settings.client() as client:
            daemon = await client.status()
            found = await client.breakers()
        print_rich(status_table(daemon, found, now=time.time()))
        return EXIT_OK

    run_main(main)
