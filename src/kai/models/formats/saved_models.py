"""TensorFlow SavedModels, run by TensorFlow when the ``tensorflow`` extra is installed.

A SavedModel is a folder: ``saved_model.pb`` (the graphs and their
signatures), ``variables/`` (a checkpoint of the weights) and maybe
``assets/``. Kai takes it as one ZIP of that folder, unpacked through the
same checks as any bundle (names that climb out, links, bombs).

Nothing in the folder is trusted. Before TensorFlow loads it, every
operator of the graph and of its function library is read from the
protobuf and checked: operators that call back into Python (``PyFunc``,
``EagerPyFunc``), operators that read or write files (by name, and any whose name speaks of
files, readers, datasets, summaries or debugging), and operators
TensorFlow does not register (custom op libraries, which Kai never loads)
are refused. The ``serving_default`` signature is then what Kai feeds: one
NHWC float image input, an output of class scores, and, when the signature
also returns one named like an embedding (``features``, ``embedding``,
``pooled``...), that output for feature extraction.

TensorFlow is imported only where a SavedModel is inspected (the import's
sandbox) or run. A server predicting with a SavedModel version runs it in a
worker process of its own, started with no secrets in its environment and
its memory capped, so TensorFlow never loads into the server; arrays cross
its pipes as raw float32 bytes behind a JSON header, never pickled. (Kai's
package imports PyTorch before TensorFlow in those processes, the order in
which both load; PyTorch loaded after TensorFlow crashes the process.)
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import resource
import select
import shutil
import subprocess
import sys
import threading
import weakref
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from kai.errors import CorruptModelFile, InvalidInput, TimeLimitExceeded, UnsafeModelFile
from kai.models.formats.base import (
    ArtifactFile,
    Features,
    ImportOptions,
    InputSpec,
    Inspection,
    LayerGroup,
    ModelSpec,
    Predictor,
    Probabilities,
)
from kai.models.formats.bundles import unpacked_bundle
from kai.models.formats.class_names import resolve_class_names
from kai.models.formats.preprocessing import (
    images_to_array,
    looks_like_probabilities,
    scores_as_features,
    softmax,
)
from kai.security.sandbox import child_environment

logger = logging.getLogger(__name__)

GRAPH_FILE = "saved_model.pb"
VARIABLES_FOLDER = "variables"
ARTIFACT_FOLDER = "saved_model"
SIGNATURE = "serving_default"
SERVE_TAG = "serve"
MISSING_EXTRA = (
    "TensorFlow SavedModels need TensorFlow: install Kai's 'tensorflow' extra "
    "(pip install 'kai[tensorflow]') and restart Kai"
)
FEATURE_OUTPUT_NAMES = frozenset(
    {"features", "feature", "embedding", "embeddings", "penultimate", "pooled", "pool"}
)
# Operators that run Python from the graph: never loaded.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# Operators that reach the file system (or the network) outside a checkpoint's restore:
# never loaded. Besides these, any operator whose name has one of the words below.
FILE_OPS = frozenset(
    {
        "MatchingFiles",
        "ImmutableConst",
        "LoadAndRemapMatrix",
        "InitializeTableFromTextFile",
        "InitializeTableFromTextFileV2",
    }
)
FILE_OP_WORDS = ("File", "Reader", "Dataset", "Summary", "Debug", "Rpc", "Gcs", "Bigtable")
# String operators that only compute checkpoint file names.
_NAMING_OPS = frozenset({"ShardedFilename", "ShardedFilespec"})
# Checkpoint operators: allowed in the functions that save and restore variables, never
# in what the serving signature runs, where the uploader would choose their paths.
CHECKPOINT_OPS = frozenset(
    {"SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice", "MergeV2Checkpoints"}
)
_HEADER_LIMIT_BYTES = 1 << 16
# What a prediction worker may allocate beyond what it holds once TensorFlow is imported.
WORKER_MEMORY_BYTES = 6 * 1024**3
# How long a prediction worker may take to start (TensorFlow's import included) or answer.
WORKER_TIMEOUT_SECONDS = 300.0
# Nodes that end a graph without being an answer.
_NOT_OUTPUTS = frozenset({"NoOp", "Const", "Placeholder", "Assert", "VarHandleOp"})


class SavedModelFormat:
    """The SavedModel adapter: a zipped SavedModel folder, run by TensorFlow."""

    name = "savedmodel"
    framework = "tensorflow"
    suffixes: tuple[str, ...] = (".zip",)

    def detect(self, path: Path) -> bool:
        """A ZIP holding one ``saved_model.pb`` with a ``variables/`` folder beside it."""
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                return False
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
        return savedmodel_prefix(names) is not None

    def check(self, path: Path, options: ImportOptions) -> None:
        """Refuse at once without TensorFlow; unpack the ZIP through the archive checks."""
        del options
        require_tensorflow()
        saved_model_folder(path)

    def inspect(self, path: Path, options: ImportOptions) -> Inspection:
        """Check the graph's operators, load it and run its signature once."""
        graph = SavedModelGraph(saved_model_folder(path), options.graph_input, options.graph_output)
        notes: list[str] = []
        if graph.features_output is None:
            notes.append(
                f"The {SIGNATURE!r} signature has no embedding output "
                f"({', '.join(sorted(FEATURE_OUTPUT_NAMES))}); its class scores serve as its "
                "features"
            )
        return inspect_graph(
            self.name,
            graph,
            options,
            notes,
            group_module=SIGNATURE,
            safety_checks=[
                *GRAPH_SAFETY_CHECKS,
                "bundle unpacked with the archive checks: no '..', links or bombs",
            ],
        )

    def prepare(self, path: Path, inspection: Inspection, out_dir: Path) -> list[ArtifactFile]:
        """Keep the SavedModel folder's files as they are, under ``saved_model/``."""
        del inspection
        folder = saved_model_folder(path)
        files: list[ArtifactFile] = []
        for source in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{ARTIFACT_FOLDER}/{source.relative_to(folder).as_posix()}"
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            files.append(ArtifactFile("weights", name, target))
        return files

    def load(self, artifact_dir: Path, spec: ModelSpec) -> Predictor:
        """A predictor over the kept folder; in a TensorFlow worker unless TensorFlow is here."""
        folder = artifact_dir / ARTIFACT_FOLDER
        runner: GraphRunner
        if "tensorflow" in sys.modules:
            runner = SavedModelGraph(folder, spec.graph_input, spec.graph_output)
        else:
            runner = WorkerGraph(folder, spec.graph_input, spec.graph_output)
        return SavedModelPredictor(runner, spec)


class SavedModelPredictor:
    """Classifies with a SavedModel's signature; gives its embedding output when it has one."""

    def __init__(self, graph: GraphRunner, spec: ModelSpec) -> None:
        self.graph = graph
        self.spec = spec

    def predict(self, batch: Any) -> Probabilities:
        """Class probabilities ``(N, num_classes)`` for PIL images or a prepared NCHW batch."""
        values = self.graph.run(_nhwc(images_to_array(batch, self.spec.input)))
        return values if self.spec.outputs_probabilities else softmax(values)

    def extract_features(self, batch: Any) -> Features:
        """The signature's embedding output ``(N, num_features)``, or its class scores.

        A graph with no embedding output (a frozen graph, a SavedModel whose
        signature returns only scores) gives its scores as features (see
        :func:`~kai.models.formats.preprocessing.scores_as_features`).
        """
        inputs = _nhwc(images_to_array(batch, self.spec.input))
        if self.graph.features_output is not None:
            return self.graph.run(inputs, features=True)
        scores = self.graph.run(inputs)
        return scores_as_features(scores, probabilities=self.spec.outputs_probabilities)


class GraphRunner:
    """Runs a SavedModel signature on an NHWC float batch; what the predictor needs of one."""

    features_output: str | None

    def run(self, inputs: np.ndarray, *, features: bool = False) -> np.ndarray:
        """Class scores (or features) ``(N, D)``."""
        raise NotImplementedError


class SavedModelGraph(GraphRunner):
    """A SavedModel loaded in this process, after its operators are checked; thread-safe.

    Args:
        folder: The SavedModel folder.
        input_name: The signature input to feed; required when it has several.
        output_name: The signature output to read; required when it is ambiguous.
    """

    def __init__(self, folder: Path, input_name: str | None, output_name: str | None) -> None:
        tf = tensorflow_module()
        self.folder = folder
        check_operators(folder)
        try:
            loaded = tf.saved_model.load(str(folder), tags=[SERVE_TAG])
        except Exception as exc:  # TensorFlow raises many kinds for a bad folder.
            raise InvalidInput(
                f"TensorFlow cannot load the SavedModel: {str(exc)[:300] or type(exc).__name__}"
            ) from exc
        signatures = dict(getattr(loaded, "signatures", {}) or {})
        if SIGNATURE not in signatures:
            raise InvalidInput(
                f"The SavedModel has no {SIGNATURE!r} signature; it has {sorted(signatures)}",
                details={"signatures": sorted(signatures)},
            )
        self._loaded = loaded
        self._function = signatures[SIGNATURE]
        _, inputs = self._function.structured_input_signature
        self.inputs: dict[str, Any] = dict(inputs)
        self.outputs: dict[str, Any] = dict(self._function.structured_outputs)
        where = f"{SIGNATURE!r} signature"
        self.input_name = _pick(sorted(self.inputs), input_name, "input", where)
        self.output_name = _pick(_score_outputs(self.outputs), output_name, "output", where)
        self.features_output = _features_output(self.outputs, self.output_name)
        spec = self.inputs[self.input_name]
        self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)
        shape = spec.shape
        self.input_shape = [None if d is None else int(d) for d in shape.as_list()]
        _check_input(self.input_name, self.input_shape, self.input_dtype, "SavedModel")
        self._lock = threading.Lock()

    def run(self, inputs: np.ndarray, *, features: bool = False) -> np.ndarray:
        """The chosen output (or the embedding) ``(N, D)`` for an NHWC float batch."""
        name = self.output_name
        if features:
            if self.features_output is None:
                raise InvalidInput(_NO_FEATURES)
            name = self.features_output
        # A signature built for batches of one is fed one image at a time.
        batches = [inputs] if self.input_shape[0] != 1 else [image[None] for image in inputs]
        rows = [self._run_batch(batch, name) for batch in batches]
        return np.concatenate(rows)

    def _run_batch(self, inputs: np.ndarray, name: str) -> np.ndarray:
        tf = tensorflow_module()
        feed = tf.constant(inputs.astype(self.input_dtype, copy=False))
        with self._lock:
            try:
                result = self._function(**{self.input_name: feed})
            except Exception as exc:  # TensorFlow's errors for a failing graph vary.
                raise InvalidInput(
                    f"The SavedModel failed on a {inputs.shape} input: {str(exc)[:300]}"
                ) from exc
        values = np.asarray(result[name].numpy(), dtype=np.float32)
        return values.reshape(values.shape[0], -1)

    def parameter_count(self) -> int:
        """Elements of the variables the checkpoint holds."""
        tf = tensorflow_module()
        prefix = self.folder / VARIABLES_FOLDER / VARIABLES_FOLDER
        try:
            variables = tf.train.list_variables(str(prefix))
        except Exception as exc:  # A damaged checkpoint index.
            raise InvalidInput(f"The SavedModel's variables do not read: {exc}") from exc
        return int(
            sum(
                int(np.prod(shape))
                for name, shape in variables
                if name.endswith("VARIABLE_VALUE") and shape
            )
        )

    def details(self) -> dict[str, Any]:
        """The signature's inputs and outputs, for the version's record."""

        def describe(name: str, spec: Any) -> dict[str, Any]:
            return {
                "name": name,
                "shape": [None if d is None else int(d) for d in spec.shape.as_list()],
                "type": np.dtype(spec.dtype.as_numpy_dtype).name,
            }

        return {
            "signature": SIGNATURE,
            "inputs": [describe(n, s) for n, s in sorted(self.inputs.items())],
            "outputs": [describe(n, s) for n, s in sorted(self.outputs.items())],
            "featuresOutput": self.features_output,
            "dataFormat": "channels_last",
        }


class FrozenGraph(GraphRunner):
    """A frozen ``GraphDef`` loaded in this process, after its operators are checked.

    A frozen graph has no signature: its inputs are its ``Placeholder`` nodes and its
    candidate outputs the nodes nothing else reads; any node may be named as the output.

    Args:
        path: The ``.pb`` file.
        input_name: The placeholder to feed; required when there are several.
        output_name: The node to read; required when several nodes end the graph.
    """

    def __init__(self, path: Path, input_name: str | None, output_name: str | None) -> None:
        tf = tensorflow_module()
        graph_def = tf.compat.v1.GraphDef()
        _parse(graph_def, path, "a frozen GraphDef")
        check_graph_def(graph_def)
        nodes = {n.name: n for n in graph_def.node}
        placeholders = sorted(n.name for n in graph_def.node if n.op == "Placeholder")
        read = {_node_of(i) for n in graph_def.node for i in n.input}
        ends = sorted(
            n.name
            for n in graph_def.node
            if n.name not in read and n.op not in _NOT_OUTPUTS and not n.op.startswith("Save")
        )
        where = "frozen graph"
        self.input_name = _pick(placeholders, input_name, "input", where)
        if output_name is not None and output_name in nodes:
            self.output_name = output_name
        else:
            self.output_name = _pick(ends, output_name, "output", where)
        self.features_output = None
        placeholder = nodes[self.input_name]
        self.input_dtype = np.dtype(
            tf.dtypes.as_dtype(placeholder.attr["dtype"].type).as_numpy_dtype
        )
        dims = placeholder.attr["shape"].shape.dim
        self.input_shape = [None if d.size < 0 else int(d.size) for d in dims]
        _check_input(self.input_name, self.input_shape, self.input_dtype, "frozen graph")

        def imported() -> None:
            tf.compat.v1.import_graph_def(graph_def, name="")

        try:
            wrapped = tf.compat.v1.wrap_function(imported, [])
            self._function = wrapped.prune(
                wrapped.graph.get_tensor_by_name(f"{self.input_name}:0"),
                wrapped.graph.get_tensor_by_name(f"{self.output_name}:0"),
            )
        except Exception as exc:  # TensorFlow raises many kinds for a graph it cannot import.
            raise InvalidInput(
                f"TensorFlow cannot import the frozen graph: {str(exc)[:300] or type(exc)}"
            ) from exc
        self._constants = [n for n in graph_def.node if n.op == "Const"]
        self._lock = threading.Lock()

    def run(self, inputs: np.ndarray, *, features: bool = False) -> np.ndarray:
        """The chosen node's values ``(N, D)`` for an NHWC float batch."""
        if features:
            raise InvalidInput(_NO_GRAPH_FEATURES)
        # A placeholder built for batches of one is fed one image at a time.
        batches = [inputs] if self.input_shape[0] != 1 else [image[None] for image in inputs]
        return np.concatenate([self._run_batch(batch) for batch in batches])

    def _run_batch(self, inputs: np.ndarray) -> np.ndarray:
        tf = tensorflow_module()
        feed = tf.constant(inputs.astype(self.input_dtype, copy=False))
        with self._lock:
            try:
                result = self._function(feed)
            except Exception as exc:  # TensorFlow's errors for a failing graph vary.
                raise InvalidInput(
                    f"The frozen graph failed on a {inputs.shape} input: {str(exc)[:300]}"
                ) from exc
        values = np.asarray(result.numpy(), dtype=np.float32)
        return values.reshape(values.shape[0], -1)

    def parameter_count(self) -> int:
        """Elements of the float constants: a frozen graph's weights."""
        tf = tensorflow_module()
        count = 0
        for node in self._constants:
            tensor = node.attr["value"].tensor
            if not tf.dtypes.as_dtype(tensor.dtype).is_floating:
                continue
            count += int(np.prod([d.size for d in tensor.tensor_shape.dim]))
        return count

    def details(self) -> dict[str, Any]:
        """The input and output chosen, for the version's record."""
        return {
            "inputs": [
                {
                    "name": self.input_name,
                    "shape": self.input_shape,
                    "type": self.input_dtype.name,
                }
            ],
            "outputs": [{"name": self.output_name}],
            "featuresOutput": None,
            "dataFormat": "channels_last",
        }


class WorkerGraph(GraphRunner):
    """A SavedModel run by a TensorFlow worker process; thread-safe.

    The worker is started with the sandbox's environment (no secrets), loads the
    graph with the same checks, and answers batches until this object is dropped.
    A worker that dies is started again on the next batch; one that takes longer
    than :data:`WORKER_TIMEOUT_SECONDS` to answer is killed.
    """

    def __init__(
        self, path: Path, input_name: str | None, output_name: str | None, *, frozen: bool = False
    ) -> None:
        self._hello: dict[str, Any] = {
            "path": str(path),
            "input": input_name,
            "output": output_name,
            "frozen": frozen,
        }
        self._lock = threading.Lock()
        with self._lock:
            ready = self._start()
        self.features_output = ready.get("featuresOutput")

    def run(self, inputs: np.ndarray, *, features: bool = False) -> np.ndarray:
        """Send the batch to the worker and read its answer."""
        batch = np.ascontiguousarray(inputs, dtype=np.float32)
        with self._lock:
            if self._process.poll() is not None:
                logger.warning(
                    "The TensorFlow worker for %s stopped; starting it again", self._hello
                )
                self._start()
            self._send({"shape": list(batch.shape), "features": features}, batch.tobytes())
            header, payload = self._receive()
        shape = [int(d) for d in header["shape"]]
        values = np.frombuffer(payload, dtype=np.float32)
        if len(shape) != 2 or values.size != shape[0] * shape[1]:
            raise InvalidInput(f"The TensorFlow worker answered a malformed shape {shape}")
        return values.reshape(shape).copy()

    def close(self) -> None:
        """Stop the worker."""
        self._finalizer()

    def kill(self) -> None:
        """End the worker at once, as a crash would."""
        self._process.kill()
        self._process.wait()

    def _start(self) -> dict[str, Any]:
        command = [sys.executable, "-c", _WORKER_BOOTSTRAP, *sys.path]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_environment(),
        )
        self._finalizer = weakref.finalize(self, _stop_worker, self._process)
        self._send(self._hello, b"")
        ready, _ = self._receive()
        return ready

    def _send(self, header: dict[str, Any], payload: bytes) -> None:
        stream = self._process.stdin
        assert stream is not None
        try:
            _write_message(stream, {**header, "bytes": len(payload)}, payload)
        except (BrokenPipeError, OSError) as exc:
            raise InvalidInput("The TensorFlow worker has stopped") from exc

    def _receive(self) -> tuple[dict[str, Any], bytes]:
        stream = self._process.stdout
        assert stream is not None
        answered, _, _ = select.select([stream], [], [], WORKER_TIMEOUT_SECONDS)
        if not answered:
            self._finalizer.detach()
            self._process.kill()
            _stop_worker(self._process)
            raise TimeLimitExceeded(
                f"The TensorFlow worker did not answer within {WORKER_TIMEOUT_SECONDS:.0f} s "
                "and was stopped"
            )
        message = _read_message(stream)
        if message is None:
            code = self._process.poll()
            raise InvalidInput(f"The TensorFlow worker stopped (exit status {code})")
        header, payload = message
        if "error" in header:
            error = UnsafeModelFile if header.get("code") == "unsafe_model_file" else InvalidInput
            raise error(str(header["error"]))
        return header, payload


_WORKER_BOOTSTRAP = (
    "import sys; sys.path[:0] = sys.argv[1:]; "
    "from kai.models.formats.saved_models import serve_worker; serve_worker()"
)
_NO_GRAPH_FEATURES = (
    "A frozen graph names no embedding: feature extraction is unsupported for it; "
    "upload the model as a SavedModel whose signature returns its features"
)
_NO_FEATURES = (
    f"The SavedModel's {SIGNATURE!r} signature returns no embedding beside its class scores "
    f"(an output named {', '.join(sorted(FEATURE_OUTPUT_NAMES))}); feature extraction is "
    "unsupported for it"
)


def serve_worker() -> None:
    """The worker's loop: load the graph named first, then answer batches until stdin ends."""
    stdin = sys.stdin.buffer
    # Answers go to a copy of the pipe; whatever TensorFlow prints goes to stderr instead.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    hello = _read_message(stdin)
    if hello is None:
        return
    header, _ = hello
    kind = FrozenGraph if header["frozen"] else SavedModelGraph
    try:
        # Imported before the cap, so that the cap measures the model's own needs.
        tensorflow_module()
        _cap_memory(WORKER_MEMORY_BYTES)
        graph: GraphRunner = kind(Path(header["path"]), header["input"], header["output"])
    except InvalidInput as exc:
        _write_message(stdout, {"error": exc.message, "code": exc.code, "bytes": 0}, b"")
        return
    _write_message(stdout, {"featuresOutput": graph.features_output, "bytes": 0}, b"")
    while (request := _read_message(stdin)) is not None:
        header, payload = request
        try:
            batch = np.frombuffer(payload, dtype=np.float32).reshape(header["shape"])
            values = graph.run(batch, features=bool(header["features"]))
        except (InvalidInput, ValueError) as exc:
            message = exc.message if isinstance(exc, InvalidInput) else str(exc)
            _write_message(stdout, {"error": message, "bytes": 0}, b"")
            continue
        data = np.ascontiguousarray(values, dtype=np.float32).tobytes()
        _write_message(stdout, {"shape": list(values.shape), "bytes": len(data)}, data)


def _cap_memory(memory_bytes: int) -> None:
    """Cap the data segment at what the worker holds now plus ``memory_bytes``."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return
    held = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("VmData:")), "0"
    )
    limit = int(held) * 1024 + memory_bytes
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _write_message(stream: IO[bytes], header: dict[str, Any], payload: bytes) -> None:
    stream.write(json.dumps(header).encode() + b"\n" + payload)
    stream.flush()


def _read_message(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    line = stream.readline(_HEADER_LIMIT_BYTES)
    if not line:
        return None
    header: dict[str, Any] = json.loads(line)
    size = int(header.get("bytes", 0))
    payload = stream.read(size) if size else b""
    if len(payload) != size:
        return None
    return header, payload


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def require_tensorflow() -> None:
    """Raise the install advice when TensorFlow is not installed, without importing it."""
    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise InvalidInput(MISSING_EXTRA, details={"field": "file", "extra": "tensorflow"})


def tensorflow_module() -> Any:
    """The ``tensorflow`` module; InvalidInput saying how to add it when it is missing."""
    try:
        return importlib.import_module("tensorflow")
    except ImportError as exc:
        raise InvalidInput(MISSING_EXTRA, details={"field": "file", "extra": "tensorflow"}) from exc


def savedmodel_prefix(names: Iterable[str]) -> str | None:
    """The folder (``""`` or ``"name/"``) of the ZIP's one ``saved_model.pb`` with variables."""
    listed = list(names)
    graphs = [name for name in listed if PurePosixPath(name).name == GRAPH_FILE]
    if len(graphs) != 1:
        return None
    prefix = graphs[0][: -len(GRAPH_FILE)]
    if prefix and not prefix.endswith("/"):
        return None
    variables = f"{prefix}{VARIABLES_FOLDER}/"
    return prefix if any(name.startswith(variables) for name in listed) else None


def saved_model_folder(path: Path) -> Path:
    """The SavedModel folder inside the ZIP, unpacked beside it with the archive checks."""
    folder = unpacked_bundle(path)
    graphs = [p for p in folder.rglob(GRAPH_FILE) if p.is_file()]
    if len(graphs) != 1 or not (graphs[0].parent / VARIABLES_FOLDER).is_dir():
        raise InvalidInput(
            f"The ZIP must hold one {GRAPH_FILE} with its {VARIABLES_FOLDER}/ folder beside it",
            details={"field": "file"},
        )
    return graphs[0].parent


def check_operators(folder: Path) -> None:
    """Refuse a SavedModel with Python, file or unregistered operators, before TensorFlow loads it.

    Raises:
        CorruptModelFile: ``saved_model.pb`` does not parse.
        UnsafeModelFile: An operator runs Python, reaches files, or is not TensorFlow's.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    message = saved_model_pb2.SavedModel()
    _parse(message, folder / GRAPH_FILE, "a SavedModel")
    if not message.meta_graphs:
        raise CorruptModelFile(f"{GRAPH_FILE} holds no meta graph")
    for meta_graph in message.meta_graphs:
        functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
        check_graph_def(meta_graph.graph_def, _serving_nodes(meta_graph, functions))


def check_graph_def(graph: Any, serving: Iterable[tuple[str, str]] | None = None) -> None:
    """Refuse a ``GraphDef`` with Python, file or unregistered operators.

    Args:
        graph: The ``GraphDef``.
        serving: ``(op, node)`` of what inference runs, where checkpoint operators are
            refused too; None when inference runs the whole graph.

    Raises:
        UnsafeModelFile: An operator runs Python, reaches files, or is not TensorFlow's.
    """
    from tensorflow.python.framework import op_def_registry

    functions = {f.signature.name for f in graph.library.function}
    every = [(n.op, n.name) for n in graph.node]
    every += [(n.op, n.name) for f in graph.library.function for n in f.node_def]
    for op, node in every:
        if op in PYTHON_OPS:
            raise UnsafeModelFile(
                f"The graph's node {node!r} is a {op} operator, which runs Python code "
                "from the graph; Kai never loads such a graph",
                details={"operator": op, "node": node},
            )
        if _reaches_files(op):
            raise UnsafeModelFile(
                f"The graph's node {node!r} is a {op} operator, which reaches the file "
                "system; Kai never loads such a graph",
                details={"operator": op, "node": node},
            )
        if op not in functions and op_def_registry.get(op) is None:
            raise UnsafeModelFile(
                f"The graph's node {node!r} uses the operator {op!r}, which TensorFlow "
                "does not register (a custom op library, which Kai never loads)",
                details={"operator": op, "node": node},
            )
    for op, node in every if serving is None else serving:
        if op in CHECKPOINT_OPS:
            raise UnsafeModelFile(
                f"The graph's inference runs {op} (node {node!r}), which reads or writes "
                "checkpoint files; Kai never loads such a graph",
                details={"operator": op, "node": node},
            )


def _reaches_files(op: str) -> bool:
    if op in _NAMING_OPS:
        return False
    return op in FILE_OPS or any(word in op for word in FILE_OP_WORDS)


def _parse(message: Any, path: Path, what: str) -> None:
    from google.protobuf.message import DecodeError

    try:
        message.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise CorruptModelFile(f"{path.name} does not parse as {what}: {exc}") from exc


def _serving_nodes(meta_graph: Any, functions: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(op, node name)`` of what the signatures run: the nodes their outputs depend on,
    and every node of the functions those call, at any depth."""
    graph_nodes = {n.name: n for n in meta_graph.graph_def.node}
    pending = [
        tensor.name.split(":")[0].lstrip("^")
        for signature in meta_graph.signature_def.values()
        for tensor in signature.outputs.values()
    ]
    seen: set[str] = set()
    called: list[str] = []
    while pending:
        name = pending.pop()
        if name in seen or name not in graph_nodes:
            continue
        seen.add(name)
        node = graph_nodes[name]
        yield node.op, node.name
        called += _called_functions(node, functions)
        pending += [i.split(":")[0].lstrip("^") for i in node.input]
    visited: set[str] = set()
    while called:
        function_name = called.pop()
        if function_name in visited:
            continue
        visited.add(function_name)
        for node in functions[function_name].node_def:
            yield node.op, node.name
            called += _called_functions(node, functions)


def _called_functions(node: Any, functions: dict[str, Any]) -> list[str]:
    names = [node.op] if node.op in functions else []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names += [f.name for f in value.list.func]
    return [name for name in names if name in functions]


def _score_outputs(outputs: dict[str, Any]) -> list[str]:
    """The outputs that may hold class scores: all but embeddings, unless that leaves none."""
    scores = sorted(name for name in outputs if name.lower() not in FEATURE_OUTPUT_NAMES)
    return scores or sorted(outputs)


def _features_output(outputs: dict[str, Any], scores: str) -> str | None:
    found = sorted(n for n in outputs if n.lower() in FEATURE_OUTPUT_NAMES and n != scores)
    return found[0] if found else None


def _pick(names: list[str], wanted: str | None, what: str, where: str) -> str:
    field = f"graph{what.title()}"
    if wanted is not None:
        if wanted not in names:
            raise InvalidInput(
                f"The {where} has no {what} named {wanted!r}; it has {names}",
                details={"field": field, "names": names},
            )
        return wanted
    if len(names) != 1:
        raise InvalidInput(
            f"The {where} has {len(names)} {what}s ({', '.join(names) or 'none'}); "
            f"say which one to use with {field}",
            details={"field": field, "names": names},
        )
    return names[0]


def _node_of(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


def _check_input(name: str, shape: list[int | None], dtype: np.dtype[Any], where: str) -> None:
    if len(shape) != 4 or dtype.kind != "f":
        raise InvalidInput(
            f"The {where} input {name!r} is {dtype.name} of shape {shape}; "
            "Kai feeds 4-D float NHWC images",
            details={"field": "graphInput"},
        )
    if shape[3] not in (None, 3):
        raise InvalidInput(
            f"The {where} input {name!r} has shape {shape}; Kai feeds NHWC images with 3 channels",
            details={"field": "graphInput"},
        )


def _nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


def input_spec_for(shape: list[int | None], options: ImportOptions, notes: list[str]) -> InputSpec:
    """The input size (fixed by the graph, else given, else the default) and normalisation."""
    height, width = shape[1], shape[2]
    given = options.input_size_px
    if height is not None and width is not None:
        if given and given != (height, width):
            raise InvalidInput(
                f"The graph takes {height}x{width} px inputs, not the {given} given",
                details={"field": "inputSize"},
            )
        size = (height, width)
    elif given:
        size = given
    else:
        size = InputSpec().size_px
        notes.append(f"The input size is not fixed and none was given; {size} is assumed")
    if options.mean is None or options.std is None:
        notes.append("No mean and std given; ImageNet's are assumed")
    spec = InputSpec(size_px=size)
    chosen = {"mean": options.mean, "std": options.std}
    return spec.model_copy(update={k: v for k, v in chosen.items() if v is not None})


GRAPH_SAFETY_CHECKS = [
    "no operators that run Python (PyFunc, EagerPyFunc) or reach files",
    "only operators TensorFlow registers, no custom op libraries",
]


def inspect_graph(
    format_name: str,
    graph: Any,
    options: ImportOptions,
    notes: list[str],
    *,
    group_module: str,
    safety_checks: list[str],
) -> Inspection:
    """Run a loaded TensorFlow graph once on a random image and describe it.

    ``graph`` is a SavedModel signature or a frozen graph: anything with
    ``input_shape``, ``input_name``, ``output_name``, ``run``, ``parameter_count``
    and ``details``. ``notes`` already holds what the caller found.
    """
    input_spec = input_spec_for(graph.input_shape, options, notes)
    height, width = input_spec.size_px
    trial = np.random.default_rng(0).standard_normal((1, height, width, 3), np.float32)
    values = graph.run(trial)
    num_classes = int(values.shape[1])
    spec = ModelSpec(
        format=format_name,
        num_classes=num_classes,
        input=input_spec,
        class_names=resolve_class_names(options.class_names, num_classes, notes),
        graph_input=graph.input_name,
        graph_output=graph.output_name,
        outputs_probabilities=looks_like_probabilities(values),
    )
    parameters = int(graph.parameter_count())
    return Inspection(
        spec=spec,
        parameter_count=parameters,
        layer_groups=[LayerGroup(name="graph", modules=[group_module], parameter_count=parameters)],
        notes=notes,
        safety_checks=safety_checks,
        details=graph.details(),
    )
