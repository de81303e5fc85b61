"""The functional graph behind Model(inputs, outputs): the layer calls recorded on
KerasTensors, run as a flat list of fused forwards and, in reverse, their backprops.
A tensor consumed twice gets the sum of both gradients; a layer called twice (shared)
accumulates weight gradients from both calls."""
import numpy as np

from pylayers.layers.input_layer import InputLayer
from pylayers.layers.keras_tensor import KerasTensor
from pylayers.layers.layer import Layer


class FunctionalGraph:
    def __init__(self, model, inputs, outputs):
        self.model = model
        self.structure_inputs, self.structure_outputs = inputs, outputs
        self.inputs = _flatten(inputs, "inputs")
        self.outputs = _flatten(outputs, "outputs")
        self.input_names = _dict_keys(inputs)
        self.output_keys = _dict_keys(outputs)
        for tensor in self.inputs:
            if not isinstance(tensor.layer, InputLayer):
                raise ValueError(f"Model '{model.name}': every input must come from "
                                 f"keras.Input(); received {tensor} made by layer "
                                 f"'{tensor.layer.name if tensor.layer else None}'.")
        self.nodes = self._topological_nodes()
        self.layers = self._ordered_layers()
        _check_unique_names(self.layers)
        self._consumers = self._count_consumers()
        self._plan = self._execution_plan()
        # per node: whether its layer can make a mask from unmasked inputs (Embedding,
        # Masking); other layers only pass on masks they receive
        self._makes_masks = [type(layer).compute_mask is not Layer.compute_mask
                             for layer, *_ in self._plan]
        self._uses_masks = any(self._makes_masks)
        self._activations = self._output_activations()

    # ---- structure ------------------------------------------------------------------

    def _topological_nodes(self):
        """Nodes from the inputs to the outputs, each after the nodes it reads from."""
        input_ids = {id(t) for t in self.inputs}
        ordered, seen, visiting = [], set(), set()

        def visit(tensor):
            if id(tensor) in input_ids:
                return
            node = tensor.node
            if node is None or isinstance(node.layer, InputLayer):
                raise ValueError(f"Graph disconnected: cannot obtain value for {tensor}: it "
                                 f"comes from "
                                 f"{'no layer' if node is None else repr(node.layer.name)}, "
                                 f"which is not among the model's inputs "
                                 f"{[t.layer.name for t in self.inputs]}.")
            if id(node) in seen:
                return
            if id(node) in visiting:
                raise ValueError("The graph of layer calls has a cycle.")
            visiting.add(id(node))
            for parent in node.inputs:
                visit(parent)
            visiting.discard(id(node))
            seen.add(id(node))
            ordered.append(node)

        for tensor in self.outputs:
            if not isinstance(tensor, KerasTensor):
                raise TypeError(f"Model outputs must be KerasTensors. Received: {tensor!r}")
            visit(tensor)
        return ordered

    def _ordered_layers(self):
        """Keras' order: by depth from the outputs (deepest first), then call order."""
        depth = {id(t.node): 0 for t in self.outputs if t.node is not None}
        for node in reversed(self.nodes):
            for parent in node.inputs:
                parent_depth = depth.get(id(node), 0) + 1
                if parent_depth > depth.get(id(parent.node), -1):
                    depth[id(parent.node)] = parent_depth
        all_nodes = [t.node for t in self.inputs] + self.nodes
        best = {}
        for node in all_nodes:
            key = (-depth.get(id(node), 0), node.order)
            if id(node.layer) not in best or key < best[id(node.layer)][0]:
                best[id(node.layer)] = (key, node.layer)
        return [layer for _, layer in sorted(best.values(), key=lambda item: item[0])]

    def _count_consumers(self):
        counts = {}
        for node in self.nodes:
            for tensor in node.inputs:
                counts[id(tensor)] = counts.get(id(tensor), 0) + 1
        for tensor in self.outputs:
            counts[id(tensor)] = counts.get(id(tensor), 0) + 1
        return counts

    def inputs_from_dict(self, data):
        names = [t.layer.name for t in self.inputs]
        missing = set(names) - set(data)
        if missing:
            raise ValueError(f"Model '{self.model.name}': no data for inputs {sorted(missing)}. "
                             f"Received keys: {sorted(data)}")
        return [data[name] for name in names]

    def structure_like_outputs(self, arrays):
        if self.output_keys is not None:
            return dict(zip(self.output_keys, arrays))
        if isinstance(self.structure_outputs, (list, tuple)):
            return list(arrays)
        return arrays[0]

    def check_input_shapes(self, shapes):
        for i, (tensor, shape) in enumerate(zip(self.inputs, shapes)):
            expected = tensor.shape
            if len(expected) != len(shape) or any(
                    e is not None and e != s for e, s in zip(expected[1:], shape[1:])):
                raise ValueError(f"Input {i} ('{tensor.layer.name}') of model '{self.model.name}' "
                                 f"is incompatible: expected shape={expected}, found "
                                 f"shape={tuple(shape)}")

    def _execution_plan(self):
        """Per node, fixed for the graph's life: (layer, input ids, output ids, called
        with a list, whether its dx feeds another node)."""
        input_ids = {id(t) for t in self.inputs}
        return [(node.layer, [id(t) for t in node.inputs], [id(t) for t in node.outputs],
                 node.inputs_as_list, any(id(t) not in input_ids for t in node.inputs))
                for node in self.nodes]

    def output_activations(self):
        return self._activations

    def _output_activations(self):
        """The fusable activation of each output: only when the output tensor feeds the
        loss alone (a tensor also read by another layer needs the plain gradient)."""
        activations = []
        for tensor in self.outputs:
            layer = tensor.layer
            fusable = (self._consumers.get(id(tensor)) == 1 and len(tensor.node.outputs) == 1
                       and layer.activity_regularizer is None
                       and hasattr(layer, "output_activation"))
            activations.append(layer.output_activation() if fusable else None)
        return activations

    # ---- computation ------------------------------------------------------------------

    def infer(self, xs):
        """Predict: the outputs alone, no backprops kept (the full forward when a
        layer makes masks, which later layers must receive)."""
        if self._uses_masks:
            return self.forward(xs, False)[0]
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        for layer, in_ids, out_ids, as_list, _ in self._plan:
            y = layer._infer([values[i] for i in in_ids] if as_list else values[in_ids[0]])
            if len(out_ids) == 1:
                values[out_ids[0]] = y
            else:
                values.update(zip(out_ids, y))
        return [values[id(t)] for t in self.outputs]

    def forward(self, xs, training):
        """Run the plan, handing each layer the masks its inputs carry (Keras' mask
        propagation: Embedding(mask_zero=True) -> LSTM skips the padded steps)."""
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        masks, backprops = {}, []
        for (layer, in_ids, out_ids, as_list, _), makes_masks in zip(self._plan, self._makes_masks):
            arg = [values[i] for i in in_ids] if as_list else values[in_ids[0]]
            mask = _node_mask(masks, in_ids, as_list) if masks else None
            y, backprop = (layer._train_forward(arg, training, mask) if training
                           else layer._forward_masked(arg, False, mask))
            outputs = [y] if len(out_ids) == 1 else y
            values.update(zip(out_ids, outputs))
            if makes_masks or mask is not None:
                _record_masks(masks, out_ids, layer.compute_mask(arg, mask))
            backprops.append(backprop)
        ys = [values[id(t)] for t in self.outputs]

        def backward(d_preds, preactivation_flags=None, need_dx=False):
            flags = preactivation_flags or [False] * len(d_preds)
            grads, from_preactivation = {}, set()
            for tensor, d, flag in zip(self.outputs, d_preds, flags):
                _accumulate(grads, id(tensor), d)
                if flag:
                    from_preactivation.add(id(tensor))
            for (layer, in_ids, out_ids, as_list, feeds_node), backprop in zip(
                    reversed(self._plan), reversed(backprops)):
                if len(out_ids) == 1:
                    d = grads.pop(out_ids[0], None)
                    if d is None:
                        continue
                else:
                    d_outs = [grads.pop(i, None) for i in out_ids]
                    if all(g is None for g in d_outs):
                        continue
                    d = [np.zeros_like(values[i]) if g is None else g for i, g in zip(out_ids, d_outs)]
                needed = need_dx or feeds_node
                if out_ids[0] in from_preactivation:
                    dx = backprop(d, need_dx=needed, from_preactivation=True)
                else:
                    dx = backprop(d, need_dx=needed)
                if needed:
                    for i, d_in in zip(in_ids, dx if as_list else (dx,)):
                        _accumulate(grads, i, d_in)
            if need_dx:
                return [grads.get(id(t), np.zeros_like(values[id(t)])) for t in self.inputs]
            return None
        # the loss weighs time steps by the output's mask (single-output models)
        self.model._output_mask = masks.get(id(self.outputs[0])) if len(self.outputs) == 1 else None
        return ys, backward

    # ---- summary and config -----------------------------------------------------------

    def sequential_like(self):
        """Keras' test: a chain (one node per depth, one input tensor per node)."""
        return all(len(node.inputs) <= 1 for node in self.nodes) and \
            len({id(n.layer) for n in self.nodes}) == len(self.nodes) and \
            len(self.inputs) == 1 and len(self.outputs) == 1 and \
            all(self._consumers.get(id(t), 0) <= 1 for n in self.nodes for t in n.outputs)

    def summary_rows(self):
        from pylayers.models.summary import format_shape
        sequential_like = self.sequential_like()
        model_nodes = {id(n) for n in self.nodes} | {id(t.node) for t in self.inputs}
        rows = []
        for layer in self.layers:
            nodes = [n for n in layer._inbound_nodes if id(n) in model_nodes]
            shapes = [t.shape for t in nodes[-1].outputs]
            row = [f"{layer.name} ({type(layer).__name__})",
                   format_shape(shapes[0] if len(shapes) == 1 else shapes),
                   f"{layer.count_params():,}"]
            if not sequential_like:
                links = [f"{t.layer.name}[{t.node.node_index}][{t.index}]"
                         for n in nodes for t in n.inputs]
                row.append(", ".join(links) if links else "-")
            rows.append(row)
        return rows, sequential_like

    def get_config(self):
        from pylayers.saving.serialization import serialize_layer
        model_nodes = {id(n) for n in self.nodes}
        layers = []
        for layer in self.layers:
            entry = serialize_layer(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [_node_config(n) for n in layer._inbound_nodes
                                      if id(n) in model_nodes]
            layers.append(entry)
        return {"name": self.model.name, "trainable": self.model.trainable, "layers": layers,
                "input_layers": _tensor_refs(self.structure_inputs),
                "output_layers": _tensor_refs(self.structure_outputs)}


def _node_mask(masks, in_ids, as_list):
    """The mask argument of a node: None when no input carries one."""
    found = [masks.get(i) for i in in_ids]
    if all(m is None for m in found):
        return None
    return found if as_list else found[0]


def _record_masks(masks, out_ids, mask):
    """compute_mask gives one mask per output, or one for the first (sequence) output."""
    if mask is None:
        return
    if isinstance(mask, (list, tuple)):
        masks.update((i, m) for i, m in zip(out_ids, mask) if m is not None)
    else:
        masks[out_ids[0]] = mask


def _accumulate(grads, key, d):
    grads[key] = d if key not in grads else grads[key] + d


def _flatten(structure, what):
    if isinstance(structure, dict):
        items = list(structure.values())
    elif isinstance(structure, (list, tuple)):
        items = list(structure)
    else:
        items = [structure]
    if not items or not all(isinstance(t, KerasTensor) for t in items):
        raise TypeError(f"Model {what} must be KerasTensors (from keras.Input or layer calls "
                        f"on them). Received: {structure!r}")
    return items


def _dict_keys(structure):
    return list(structure) if isinstance(structure, dict) else None


def _check_unique_names(layers):
    names = [layer.name for layer in layers]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f'The name "{name}" is used {names.count(name)} times in the model. '
                             "All layer names should be unique.")


def _tensor_config(tensor):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(tensor.shape), "dtype": tensor.dtype,
                       "keras_history": [tensor.layer.name, tensor.node.node_index, tensor.index]}}


def _node_config(node):
    args = [_tensor_config(t) for t in node.inputs]
    return {"args": [args] if node.inputs_as_list else args, "kwargs": {}}


def _tensor_refs(structure):
    tensors = _flatten(structure, "tensors")
    refs = [[t.layer.name, t.node.node_index, t.index] for t in tensors]
    return refs if isinstance(structure, (list, tuple, dict)) else refs[0]


def model_from_graph_config(cls, config, custom_objects=None):
    """Rebuild the layers, then replay their calls once their inputs exist."""
    from pylayers.saving.serialization import deserialize_layer
    created, outputs_of = {}, {}
    pending = []
    for entry in config["layers"]:
        layer = deserialize_layer(entry, custom_objects)
        created[entry["name"]] = layer
        if isinstance(layer, InputLayer):
            outputs_of[(layer.name, 0)] = [layer.output]
        for index, node in enumerate(entry.get("inbound_nodes", [])):
            pending.append((layer, index, node))
    while pending:
        progressed = False
        for item in list(pending):
            layer, index, node = item
            refs = _history_refs(node["args"])
            if all((name, node_index) in outputs_of for name, node_index, _ in _flat_refs(refs)):
                args = _resolve(refs, outputs_of)
                result = layer(args)
                outputs_of[(layer.name, index)] = result if isinstance(result, list) else [result]
                pending.remove(item)
                progressed = True
        if not progressed:
            raise ValueError("Cannot rebuild the functional graph: some layer inputs are never produced.")
    inputs = [outputs_of[(n, i)][t] for n, i, t in _as_ref_list(config["input_layers"])]
    outputs = [outputs_of[(n, i)][t] for n, i, t in _as_ref_list(config["output_layers"])]
    single_in = not isinstance(config["input_layers"][0], list)
    single_out = not isinstance(config["output_layers"][0], list)
    return cls(inputs=inputs[0] if single_in else inputs, outputs=outputs[0] if single_out else outputs,
               name=config.get("name"), trainable=config.get("trainable", True))


def _history_refs(args):
    """The call's first argument as (name, node_index, tensor_index) refs (list or one)."""
    first = args[0]
    if isinstance(first, list):
        return [tuple(t["config"]["keras_history"]) for t in first]
    return tuple(first["config"]["keras_history"])


def _flat_refs(refs):
    return refs if isinstance(refs, list) else [refs]


def _resolve(refs, outputs_of):
    if isinstance(refs, list):
        return [outputs_of[(n, i)][t] for n, i, t in refs]
    name, node_index, tensor_index = refs
    return outputs_of[(name, node_index)][tensor_index]


def _as_ref_list(refs):
    return [tuple(r) for r in refs] if isinstance(refs[0], list) else [tuple(refs)]
