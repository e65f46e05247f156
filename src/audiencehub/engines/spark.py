"""The scale-out engine: Apache Spark (``pip install 'audiencehub[spark]'``), ``local[*]`` or a cluster.

Jobs hand the same DuckDB-dialect SELECTs as to DuckDB; ``engines/spark_sql.py`` translates them and
turns file-reading table functions into temporary views read by Spark's DataFrameReader under
DuckDB's options. One SparkSession serves the process; every engine session is a ``newSession()``
of it (its own temporary views and SQL settings, the same cluster). pyspark is imported only here,
only when a Spark engine is built.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiencehub.engines.base import Engine, EngineError, EngineInputError, EngineSession, Format, Progress
from audiencehub.engines.spark_csv import CORRUPT, PROBLEM, read_csv_file, rejects
from audiencehub.engines.spark_sql import Scan, UnsupportedSql, to_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "the Spark engine needs pyspark: pip install 'audiencehub[spark]'"
PROGRESS_INTERVAL_S = 0.5
MESSAGE_MAX = 500
# Where a reader failed on a file: Spark's error classes and the text of the codecs' exceptions.
_INPUT_MARKERS = ("FAILED_READ_FILE", "Not in GZIP format", "Unexpected end of", "MALFORMED_RECORD_IN_PARSING")
_PATH = re.compile(r"(?:file:)?(/[^\s\"'`),\]]+)")

_lock = threading.Lock()
_shared: SparkSession | None = None


def _pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError as exc:  # pragma: no cover - the extra is installed where tests run
        raise EngineError(INSTALL_HINT) from exc
    return pyspark.sql


def _storage_level() -> Any:
    import pyspark

    return pyspark.StorageLevel.MEMORY_AND_DISK


def spark_session(master: str, conf: dict[str, str], *, ui: bool = True) -> SparkSession:
    """The process's SparkSession, built on first use (``master``: ``local[*]``, ``spark://...``, ``k8s://...``).

    Later calls return the same session whatever they pass: Spark allows one SparkContext per process.
    """
    global _shared
    with _lock:
        if _shared is not None:
            return _shared
        sql = _pyspark()
        builder = sql.SparkSession.builder.master(master).appName("audiencehub")
        settings = {
            "spark.ui.enabled": "true" if ui else "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.session.timeZone": "UTC",
            # DuckDB writes TIMESTAMPTZ as adjusted-to-UTC microseconds; Spark's default is the legacy INT96.
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            # The malformed-record checks need every column of a CSV record parsed, whatever the query reads.
            "spark.sql.csv.parser.columnPruning.enabled": "false",
            "spark.sql.shuffle.partitions": "8",
            # DuckDB's to_json keeps a struct's null fields.
            "spark.sql.jsonGenerator.ignoreNullFields": "false",
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
            "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
            # Jobs create no tables: keep Spark's (empty) warehouse folder out of the working directory.
            "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "audiencehub-spark-warehouse"),
            **conf,
        }
        for key, value in settings.items():
            builder = builder.config(key, value)
        _shared = builder.getOrCreate()
        _shared.sparkContext.setLogLevel("ERROR")
        _quiet(_shared)
        return _shared


def _quiet(spark: SparkSession) -> None:
    """Silences two ERROR logs that are no error for a user: Janino's failure to compile a generated method (Spark
    falls back to interpreting it and the answer is right; a ~100-line stack per batch ingestion) and pyspark's
    ``SQLQueryContextLogger`` line for each statement Spark refuses (the job reports it, translated, already)."""
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    jvm = spark.sparkContext._jvm
    if jvm is None:  # pragma: no cover - a Spark Connect session has no JVM here
        return
    log4j = jvm.org.apache.logging.log4j
    log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator", log4j.Level.OFF
    )


def parse_conf(pairs: str | None) -> dict[str, str]:
    """``AUDIENCEHUB_SPARK_CONF``: ``key=value`` pairs separated by commas or new lines."""
    out: dict[str, str] = {}
    for item in re.split(r"[,\n]", pairs or ""):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"AUDIENCEHUB_SPARK_CONF: {item.strip()!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


_JAVA_LINE = re.compile(r"^(?:Caused by: |: )?(?:[a-z][\w$]*\.)+[A-Z][\w$]*: (.+)$")


def _clean(text: str, paths: Sequence[str], *, root_cause: bool = False) -> str:
    """Spark's message for users, on one line: files by base name, no stack, plan or statement.

    A Java exception's text (py4j's) is read for its messages (``Caused by: java.io.EOFException: ...``):
    the first, or with ``root_cause`` the last, which says what was wrong with an input file.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    java = [m.group(1) for m in map(_JAVA_LINE.match, lines) if m]
    if java:
        first = java[-1] if root_cause else java[0]
    else:
        first = next((line for line in lines if not line.startswith("An error occurred while calling")), "")
    for path in sorted(paths, key=len, reverse=True):
        first = first.replace(path, Path(path).name)
    first = _PATH.sub(lambda m: Path(m.group(1)).name, first)
    first = re.sub(r"\s*SQLSTATE: \w+", "", first)
    first = first.split(" == SQL")[0].split("; line ")[0].strip()
    return first if len(first) <= MESSAGE_MAX else first[: MESSAGE_MAX - 3] + "..."


class SparkJobSession(EngineSession):
    """One job's session: temporary views for its input files, its own SQL settings."""

    def __init__(self, spark: SparkSession, progress: Progress | None) -> None:
        self._spark = spark
        self._progress = progress
        self._inputs: list[str] = []
        self._views = 0
        self._group = f"audiencehub-{uuid.uuid4().hex}"
        self._cached: list[DataFrame] = []

    # -- reading files -------------------------------------------------------------------------

    def _register(self, scan: Scan) -> str:
        self._views += 1
        view = f"__ah_scan_{self._views}"
        self._inputs.extend(scan.paths)
        if scan.kind == "csv":
            frame = self._csv(scan)
        elif scan.kind == "parquet":
            frame = self._parquet(scan)
        elif scan.kind == "json_objects":
            frame = self._json_objects(scan)
        else:  # pragma: no cover - spark_sql only describes these
            raise UnsupportedSql(f"read_{scan.kind}")
        frame.createOrReplaceTempView(view)
        return view

    def _parquet(self, scan: Scan) -> DataFrame:
        functions = _pyspark().functions
        reader = self._spark.read
        if scan.options.get("union_by_name"):
            reader = reader.option("mergeSchema", "true")
        frame = reader.parquet(*scan.paths)
        if scan.options.get("file_row_number"):
            frame = frame.withColumn("file_row_number", functions.col("_metadata.row_index"))
        return frame

    def _readable(self, path: str, gzip: bool) -> str:
        """A path Spark decompresses when ``gzip`` (Spark tells compression by the name, DuckDB by the option)."""
        if not gzip or path.endswith(".gz"):
            return path
        folder = Path(path).parent / f".spark-{self._group}"
        folder.mkdir(exist_ok=True)
        link = folder / (Path(path).name + ".gz")
        if not link.exists():
            link.symlink_to(path)
        return str(link)

    def _csv(self, scan: Scan) -> DataFrame:
        """DuckDB's ``read_csv`` with the given columns, in file order (``engines/spark_csv.py``: split where that
        gives the same records, else one task per file).

        Malformed records (wrong number of columns, a quote left open, invalid UTF-8) are left out and,
        with ``store_rejects``, described in the view named by ``rejects_table`` as DuckDB describes them.
        """
        sql = _pyspark()
        f, types = sql.functions, sql.types
        opts = scan.options
        columns = list(opts.get("columns", {}))
        if not columns or opts.get("auto_detect", True):
            raise UnsupportedSql("read_csv needs auto_detect = false and its columns")
        schema = types.StructType(
            [types.StructField(c, types.StringType()) for c in columns]
            + [types.StructField(CORRUPT, types.StringType())]
        )
        gzip = str(opts.get("compression", "auto")) == "gzip"
        header = bool(opts.get("header", False))
        keep = bool(opts.get("store_rejects") and opts.get("rejects_table"))
        width = len(columns)
        options = {
            "header": header,
            "sep": str(opts.get("delim", opts.get("sep", ","))),
            "quote": str(opts.get("quote", '"')),
            "escape": str(opts.get("escape", '"')),
            "mode": "PERMISSIVE",
            "columnNameOfCorruptRecord": CORRUPT,
            "encoding": "UTF-8",
        }
        frames, problems = [], []
        for n, path in enumerate(scan.paths):
            frame, clean = read_csv_file(self._spark, self._readable(path, gzip), schema, options, width, header)
            if keep and not clean:
                # The rejects are read after the rows, by later statements: keep the parsed file rather than
                # parse it again (about twice as fast for a run). Spills to local disk when large.
                frame = frame.persist(_storage_level())
                self._cached.append(frame)
            frame = frame.withColumn("__ah_file_index", f.lit(n))
            frames.append(frame)
            # A file known to be clean has no rejects: an empty frame (Spark plans no scan for it).
            problems.append(frame.where(f.lit(False)) if clean else frame)
        good = _union(frames).where(f.col(PROBLEM).isNull()).select(*columns)
        if keep:
            rejects(f, _union(problems), width, header).createOrReplaceTempView(str(opts["rejects_table"]))
        return good

    def _json_objects(self, scan: Scan) -> DataFrame:
        """DuckDB's ``read_json_objects``: one JSON value per record (``json``, a VARIANT), NULL when invalid.

        ``newline_delimited``: a value per non-blank line; ``array``: the elements of the file's one array;
        ``unstructured``: the file's one value (DuckDB also reads several values one after another).
        """
        f = _pyspark().functions
        opts = scan.options
        gzip = str(opts.get("compression", "auto")) == "gzip"
        fmt = str(opts.get("format", "newline_delimited"))
        frames = []
        for path in scan.paths:
            readable = self._readable(path, gzip)
            if fmt == "newline_delimited":
                lines = self._spark.read.text(readable).where(f.trim(f.col("value")) != "")
                frames.append(lines.select(f.try_parse_json(f.col("value")).alias("json")))
            elif fmt in ("array", "unstructured"):
                whole = self._spark.read.text(readable, wholetext=True).select(f.try_parse_json("value").alias("v"))
                if fmt == "array":
                    items = f.try_variant_get(f.col("v"), "$", "array<variant>")
                    frames.append(whole.select(f.explode(items).alias("json")))
                else:
                    frames.append(whole.select(f.col("v").alias("json")))
            else:
                raise UnsupportedSql(f"read_json_objects format {fmt!r}")
        frame = frames[0]
        for other in frames[1:]:
            frame = frame.unionByName(other)
        return frame

    # -- running -------------------------------------------------------------------------------

    def _frame(self, sql: str) -> DataFrame:
        try:
            with self._watch():  # reading a CSV file split runs jobs (engines/spark_csv.py)
                return self._spark.sql(to_spark(sql, self._register))
        except UnsupportedSql as exc:
            raise EngineError(f"the Spark engine cannot run this statement: {exc}") from exc
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        text = str(exc)
        reason = _clean(text, self._inputs)
        if any(marker in text for marker in _INPUT_MARKERS):
            reason = _clean(text, self._inputs, root_cause=True)
            named = [p for p in self._inputs if p in text or Path(p).name in text]
            path = Path(named[0]) if named else Path(self._inputs[0]) if len(self._inputs) == 1 else None
            return EngineInputError(reason, path)
        return EngineError(f"{type(exc).__name__}: {reason}")

    @contextmanager
    def _watch(self) -> Iterator[None]:
        context = self._spark.sparkContext
        context.setJobGroup(self._group, "audiencehub job", interruptOnCancel=True)
        if self._progress is None:
            yield
            return
        done = threading.Event()
        tracker = context.statusTracker()

        def poll() -> None:
            while not done.wait(PROGRESS_INTERVAL_S):
                total = finished = 0
                for job in tracker.getJobIdsForGroup(self._group):
                    info = tracker.getJobInfo(job)
                    for stage in info.stageIds if info else []:
                        s = tracker.getStageInfo(stage)
                        if s is not None:
                            total += s.numTasks
                            finished += s.numCompletedTasks
                if total and self._progress is not None:
                    self._progress(100.0 * finished / total)

        watcher = threading.Thread(target=poll, name="spark-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()

    def copy(self, select_sql: str, dest: Path, fmt: Format = "parquet", *, row_group_rows: int | None = None) -> int:
        """Writes the result to the single file ``dest`` and returns its row count.

        Every task of the query's last stage writes its part file (the stage keeps its parallelism), in a folder
        next to ``dest``; the parts, in partition order (the query's order), are then joined onto ``dest``:
        Parquet row groups copied as they are (parquet-mr's ``ParquetRewriter``, no decoding), text files
        concatenated (CSV: Spark's header line once, then the parts written without one). Nothing is collected
        to the driver. The count is observed while writing (the query runs once).
        ``json_array`` writes JSON lines and then adds the brackets and commas in one streaming pass.
        """
        sql = _pyspark()
        f = sql.functions
        frame = self._frame(select_sql)
        if fmt in ("csv", "json_array"):
            frame = _timestamps_as_duckdb_text(sql, frame)
        observation = sql.Observation(f"rows-{uuid.uuid4().hex}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = dest.parent / f".{dest.name}.spark-{uuid.uuid4().hex}"
        csv_options = {"escape": '"', "emptyValue": '""'}
        try:
            with self._watch():
                observed = frame.observe(observation, f.count(f.lit(1)).alias("n"))
                if fmt == "parquet":
                    observed.write.option("compression", "zstd").parquet(str(folder))
                elif fmt == "csv":
                    observed.write.options(header=False, **csv_options).csv(str(folder))
                    # Spark's header line, as it writes it (quoted where a name needs it); no rows: no job.
                    frame.limit(0).coalesce(1).write.options(header=True, **csv_options).csv(str(folder / "header"))
                elif fmt == "json":
                    (field,) = observed.schema.fields
                    value = f.col(f"`{field.name}`")
                    text = (
                        f.to_json(value) if isinstance(field.dataType, sql.types.VariantType) else value.cast("string")
                    )
                    observed.select(f.coalesce(text, f.lit(""))).write.text(str(folder))
                else:
                    row = f.to_json(f.struct(*[f.col(c) for c in frame.columns]))
                    observed.select(row).write.text(str(folder))
            count = int(observation.get.get("n", 0))
            parts = _parts(folder)
            if fmt == "json_array":
                _json_array(parts, dest)
            elif fmt == "parquet" and len(parts) > 1:
                merged = folder / "merged.parquet"
                _merge_parquet(self._spark, parts, merged)
                os.replace(merged, dest)
            elif fmt == "csv":
                header = _parts(folder / "header")
                if header:
                    _concat([*header, *parts], dest)
                else:
                    _empty(dest, fmt, frame.columns)
            elif len(parts) == 1:
                os.replace(parts[0], dest)
            elif parts:
                _concat(parts, dest)
            else:
                _empty(dest, fmt, frame.columns)
            return count
        except (EngineError, EngineInputError):
            raise
        except Exception as exc:
            raise self._translate(exc) from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        frame = self._frame(sql)
        try:
            with self._watch():
                return [tuple(r) for r in frame.collect()]
        except Exception as exc:
            raise self._translate(exc) from exc

    def interrupt(self) -> None:
        self._spark.sparkContext.cancelJobGroup(self._group)

    def close(self) -> None:
        for frame in self._cached:
            frame.unpersist()
        for path in {str(Path(p).parent / f".spark-{self._group}") for p in self._inputs}:
            shutil.rmtree(path, ignore_errors=True)
        self._spark.sparkContext.cancelJobGroup(self._group)


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    out = frames[0]
    for other in frames[1:]:
        out = out.unionByName(other)
    return out


def _timestamps_as_duckdb_text(sql: Any, frame: DataFrame) -> DataFrame:
    """Top-level timestamps as DuckDB writes them to CSV and JSON: ``2025-05-23 20:19:00.123+00``, the fraction
    only when not zero and without trailing zeros (Spark's writers cut to milliseconds, ISO style)."""
    f, types = sql.functions, sql.types
    columns = []
    for field in frame.schema.fields:
        c = f.col(f"`{field.name}`")
        if isinstance(field.dataType, types.TimestampType | types.TimestampNTZType):
            micros = f.pmod(f.unix_micros(c.cast("timestamp")), f.lit(1_000_000))
            fraction = f.when(micros == 0, f.lit("")).otherwise(
                f.concat(f.lit("."), f.regexp_replace(f.lpad(micros.cast("string"), 6, "0"), "0+$", ""))
            )
            zone = f.lit("+00" if isinstance(field.dataType, types.TimestampType) else "")
            c = f.concat(f.date_format(c, "yyyy-MM-dd HH:mm:ss"), fraction, zone)
        columns.append(c.alias(field.name))
    return frame.select(*columns)


def _parts(folder: Path) -> list[Path]:
    """The part files Spark wrote in ``folder``, in partition order (one per non-empty task; task 0's always)."""
    found = [p for p in folder.iterdir() if p.name.startswith("part-")] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _merge_parquet(spark: SparkSession, parts: Sequence[Path], dest: Path) -> None:
    """One Parquet file of ``parts``' row groups, in order, copied without decoding (with their page indexes and
    Spark's schema metadata), by parquet-mr's ``ParquetRewriter`` in the driver's JVM."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a classic (not Connect) session
    hadoop = jvm.org.apache.hadoop.fs
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    inputs = jvm.java.util.ArrayList()
    for part in parts:
        inputs.add(hadoop.Path(jvm.java.net.URI(part.resolve().as_uri())))
    output = hadoop.Path(jvm.java.net.URI(dest.resolve().as_uri()))
    rewrite = jvm.org.apache.parquet.hadoop.rewrite
    rewriter = rewrite.ParquetRewriter(rewrite.RewriteOptions.Builder(conf, inputs, output).build())
    try:
        rewriter.processBlocks()
    finally:
        rewriter.close()


def _concat(parts: Sequence[Path], dest: Path) -> None:
    with dest.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)


def _json_array(parts: Sequence[Path], dest: Path) -> None:
    """``[`` + the JSON lines joined by commas + ``]``, streamed from ``parts`` to ``dest``."""
    with dest.open("w", encoding="utf-8") as out:
        out.write("[")
        first = True
        for lines in parts:
            with lines.open(encoding="utf-8") as src:
                for line in src:
                    text = line.rstrip("\n")
                    if not text:
                        continue
                    out.write(("" if first else ",\n") + text)
                    first = False
        out.write("]\n")


def _empty(dest: Path, fmt: str, columns: Sequence[str]) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: pa.array([], pa.null()) for c in columns}), dest)
    elif fmt == "csv":
        dest.write_text(",".join(columns) + "\n", encoding="utf-8")
    else:
        dest.write_text("", encoding="utf-8")


class SparkEngine(Engine):
    name = "spark"

    def __init__(
        self,
        *,
        master: str = "local[*]",
        conf: dict[str, str] | None = None,
        ui: bool = True,
        temp_dir: Path | None = None,
    ) -> None:
        """``temp_dir``: where Spark spills and keeps its scratch files (``spark.local.dir``) unless ``conf`` says.

        Raises :class:`EngineError` naming the install command when pyspark is missing (Spark itself starts with
        the first job).
        """
        if importlib.util.find_spec("pyspark") is None:
            raise EngineError(INSTALL_HINT)
        self._master = master
        self._conf = dict(conf or {})
        if temp_dir is not None:
            self._conf.setdefault("spark.local.dir", str(temp_dir / "spark"))
            self._conf.setdefault("spark.sql.warehouse.dir", str(temp_dir / "spark-warehouse"))
        self._ui = ui

    @property
    def spark(self) -> SparkSession:
        """The process's SparkSession (started on first use: some seconds)."""
        return spark_session(self._master, self._conf, ui=self._ui)

    @contextmanager
    def session(self, *, progress: Progress | None = None) -> Iterator[EngineSession]:
        session = SparkJobSession(self.spark.newSession(), progress)
        try:
            yield session
        finally:
            session.close()
