"""What a ``.tflite`` file holds, read from its flatbuffer without an interpreter: operator names,
variable tensors (state a fused op keeps between calls), constant tensors by type.

Used by the conversion child's checks (:mod:`condense.export.convert`), the LiteRT runner
(:mod:`condense.export.litert_runner`), TFLM (:mod:`condense.export.micro`) and ``condense inspect``.
"""

from __future__ import annotations

import collections

# Deferred on purpose: LiteRT is imported inside the functions that use it, so importing this module stays light.

__all__ = ["constant_stats", "op_names", "opcode_names", "variable_tensor_count"]


def opcode_names(model) -> list[str]:
    """The builtin operator name of each operator code of a read-only flatbuffer ``Model``
    (``ai_edge_litert.schema_py_generated``), in the file's opcode order."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    return [names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), f"op{c.BuiltinCode()}") for c in codes]


def op_names(data: bytes) -> list[str]:
    """The builtin operator name of every operator in every subgraph of a ``.tflite`` file
    (``"WHILE"``, ``"UNIDIRECTIONAL_SEQUENCE_LSTM"``...), in file order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    codes = opcode_names(model)
    return [codes[model.Subgraphs(g).Operators(o).OpcodeIndex()]
            for g in range(model.SubgraphsLength()) for o in range(model.Subgraphs(g).OperatorsLength())]


def variable_tensor_count(data: bytes) -> int:
    """Number of variable tensors (state an op keeps between invocations, e.g. a fused LSTM's)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    return sum(1 for g in range(model.SubgraphsLength()) for t in range(model.Subgraphs(g).TensorsLength())
               if model.Subgraphs(g).Tensors(t).IsVariable())


def constant_stats(data: bytes) -> dict:
    """Counts and bytes, by dtype, of the tensors that carry data (weights and constants).

    Reads the flatbuffer directly and covers *every* subgraph: the body of a ``WHILE`` loop
    (where a recurrent model's weights live) is a separate subgraph that
    ``Interpreter.get_tensor_details()`` does not list.
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    counts: collections.Counter = collections.Counter()
    nbytes: collections.Counter = collections.Counter()
    seen: set[tuple[int, int]] = set()
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
            if buffer is None:
                continue
            size = buffer.DataLength() or (buffer.Size() if buffer.Offset() > 1 else 0)
            if size <= 0:
                continue
            dtype = names.get(tensor.Type(), f"type{tensor.Type()}")
            counts[dtype] += 1
            if (tensor.Buffer(), tensor.Type()) not in seen:  # a shared buffer counts once
                seen.add((tensor.Buffer(), tensor.Type()))
                nbytes[dtype] += size
    return {"count": dict(counts), "bytes": dict(nbytes)}
