"""manage.py submit_dag FILE|DIR ...: validate and store DAG files."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from dags.services import SpecError, dag_files, submit_file


class Command(BaseCommand):
    help = "Validate and store DAG files (a folder means every *.yaml/*.yml in it)."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="FILE|DIR")

    def handle(self, *args, paths: list[str], **options):
        files = [f for p in paths for f in self._files(Path(p))]
        failures = 0
        for path in files:
            try:
                result = submit_file(path)
            except SpecError as exc:
                failures += 1
                self.stderr.write(f"{path}: rejected")
                for problem in exc.errors:
                    self.stderr.write(f"  {problem}")
                continue
            except (OSError, UnicodeDecodeError) as exc:
                failures += 1
                self.stderr.write(f"{path}: cannot read: {exc}")
                continue
            self.stdout.write(
                f"{path}: {result.dag.dag_id} {result.outcome} (version {result.version.version})"
            )
        if failures:
            raise CommandError(f"{failures} of {len(files)} DAG file(s) rejected")

    def _files(self, path: Path) -> list[Path]:
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder")
        found = dag_files(path)
        if not found:
            raise CommandError(f"{path}: no *.yaml or *.yml files in this folder")
        return found
