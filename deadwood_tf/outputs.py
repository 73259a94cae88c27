"""Which output of a model carries the class scores, and what the others get.

A model with several outputs (a classifier with a box head, a multi-task
model) is pruned with the constraints acting on one output, its class scores,
named by the user; every other output is distilled to the teacher's same
output with a loss the user gives (`DeadwoodModel(output=, other_output_losses=)`).

    heads = Heads.of(student, teacher, output="cls", other_output_losses={"box": "mse"})
    logits, others = heads.split(student(x))     # class scores, {name: tensor}

Output names: a functional model's `output_names`; the keys of a model whose
call returns a dict; otherwise positions as strings ("0", "1"). The order is
`keras.tree.flatten`'s.
"""

from __future__ import annotations

import keras


def _structure(model):
    """The model's output structure as KerasTensors (subclassed models: from the
    input shape they were built with), or None when it cannot be known."""
    outputs = getattr(model, "outputs", None)
    if outputs:
        return getattr(model, "_outputs_struct", outputs)
    shape = (model.get_build_config() or {}).get("input_shape")
    if shape is None:
        return None
    return model.compute_output_spec(
        keras.tree.map_shape_structure(lambda s: keras.KerasTensor((None, *s[1:])), shape))


def names_and_shapes(model, argument):
    """`[(name, shape without batch)]` of `model`'s outputs, in flatten order."""
    struct = _structure(model)
    if struct is None:
        raise ValueError(
            f"Invalid value for argument `{argument}`: its outputs cannot be known before it "
            "is called (a subclassed model that was never built). Call it once on a batch, "
            "or build it with `model.build(input_shape)`.")
    flat = keras.tree.flatten(struct)
    if isinstance(struct, dict):
        names = sorted(struct)
    elif getattr(model, "output_names", None) and len(model.output_names) == len(flat):
        names = list(model.output_names)
    else:
        names = [str(i) for i in range(len(flat))]
    return [(n, tuple(t.shape[1:])) for n, t in zip(names, flat)]


class Heads:
    """The class-score output's position and the other outputs' losses."""

    def __init__(self, names, index, losses, weights):
        self.names, self.index, self.losses, self.weights = names, index, losses, weights

    @property
    def several(self) -> bool:
        return len(self.names) > 1

    @property
    def output(self) -> str:
        return self.names[self.index]

    @classmethod
    def of(cls, student, teacher, output=None, other_output_losses=None,
           other_output_weights=None):
        """Checks the choice against both models; ValueError names what to choose."""
        s = names_and_shapes(student, "student")
        t = names_and_shapes(teacher, "teacher")
        if [shape for _, shape in s] != [shape for _, shape in t]:
            raise ValueError(
                "Invalid values for arguments `student`, `teacher`: expected the same output "
                f"shapes. Received: student {s}, teacher {t}")
        names = [n for n, _ in s]
        if len(names) == 1:
            if output not in (None, names[0], 0) or other_output_losses:
                raise ValueError(
                    f"Invalid value for argument `output`: the student has one output "
                    f"({names[0]!r}); leave `output` and `other_output_losses` unset. Received: "
                    f"output={output!r}, other_output_losses={other_output_losses!r}")
            return cls(names, 0, {}, {})
        example = {n: "mse" for n in names[1:]}
        if output is None:
            raise ValueError(
                f"Invalid value for argument `output`: the student has {len(names)} outputs "
                f"{names}; name the one whose class scores the constraints act on (e.g. "
                f"output={names[0]!r}) and give each other output a distillation loss to the "
                f"teacher's (e.g. other_output_losses={example!r}). Received: output=None")
        if isinstance(output, int) and not isinstance(output, bool) and 0 <= output < len(names):
            index = output
        elif output in names:
            index = names.index(output)
        else:
            raise ValueError(f"Invalid value for argument `output`: expected one of {names} "
                             f"(or a position). Received: output={output!r}")
        others = [n for i, n in enumerate(names) if i != index]
        losses = dict(other_output_losses or {})
        missing, unknown = [n for n in others if n not in losses], [n for n in losses
                                                                     if n not in others]
        if missing or unknown:
            raise ValueError(
                "Invalid value for argument `other_output_losses`: expected a distillation "
                f"loss (to the teacher's output) for each output besides {names[index]!r}: "
                f"{others}, e.g. { {n: 'mse' for n in others} }. Received: "
                f"{other_output_losses!r}" + (f" (unknown: {unknown})" if unknown else ""))
        weights = {n: 1.0 for n in others}
        for n, w in (other_output_weights or {}).items():
            if n not in others or isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(
                    "Invalid value for argument `other_output_weights`: expected numbers >= 0 "
                    f"for outputs among {others}. Received: {other_output_weights!r}")
            weights[n] = float(w)
        return cls(names, index, {n: keras.losses.get(l) for n, l in losses.items()}, weights)

    def split(self, outputs):
        """`(class scores, {other output name: tensor})` of a call's outputs."""
        flat = keras.tree.flatten(outputs)
        if len(flat) != len(self.names):
            raise ValueError(f"Expected {len(self.names)} outputs {self.names}; the model "
                             f"returned {len(flat)}.")
        return flat[self.index], {n: f for i, (n, f) in enumerate(zip(self.names, flat))
                                  if i != self.index}

    def distillation(self, teacher_others, student_others):
        """Sum over the other outputs of weight x loss(teacher's output, student's)."""
        total = 0.0
        for name, loss in self.losses.items():
            value = loss(keras.ops.stop_gradient(teacher_others[name]), student_others[name])
            total = total + self.weights[name] * keras.ops.mean(value)
        return total

    def config(self) -> dict:
        return {"output": self.output if self.several else None,
                "other_output_losses": {n: keras.losses.serialize(l)
                                        for n, l in self.losses.items()} or None,
                "other_output_weights": dict(self.weights) or None}
