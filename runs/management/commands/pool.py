"""manage.py pool NAME --slots N [--description TEXT]: create or resize a pool;
manage.py pool --list: every pool with its slots and running tasks."""

from django.core.management.base import BaseCommand, CommandError

from dags.models import Pool
from dags.pools import PoolError, create_or_update_pool


class Command(BaseCommand):
    help = (
        "Create the pool NAME with N slots, or set the slots (and description) of the one "
        "that exists; --list shows every pool."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the pool, as tasks name it with `pool:`")
        parser.add_argument("--slots", type=int, help="at most this many of its tasks run at once")
        parser.add_argument("--description", help="kept as it is when left out of an update")
        parser.add_argument("--list", action="store_true", help="list the pools instead")

    def handle(self, *args, name: str | None, slots: int | None, **options):
        if options["list"]:
            if name is not None or slots is not None:
                raise CommandError("--list takes no NAME or --slots")
            self.list_pools()
            return
        if name is None or slots is None:
            raise CommandError("give NAME and --slots N (or --list)")
        try:
            pool, created = create_or_update_pool(name, slots, options["description"])
        except PoolError as exc:
            raise CommandError(str(exc)) from None
        done = "created" if created else "updated"
        self.stdout.write(f"pool {pool.name} {done}: {pool.slots} slots, {pool.running} running")

    def list_pools(self) -> None:
        pools = list(Pool.objects.all())
        if not pools:
            self.stdout.write("no pools; create one with: manage.py pool NAME --slots N")
            return
        width = max(len("NAME"), *(len(pool.name) for pool in pools))
        self.stdout.write(f"{'NAME':<{width}}  {'SLOTS':>6}  {'RUNNING':>7}  DESCRIPTION")
        for pool in pools:
            description = " ".join(pool.description.split())  # one line per pool
            line = f"{pool.name:<{width}}  {pool.slots:>6}  {pool.running:>7}  {description}"
            self.stdout.write(line.rstrip())
