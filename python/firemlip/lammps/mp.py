"""Message passing across MPI ranks for ``pair_style mace mode mp``: a model entry point split at the interactions.

A MACE model with T interaction layers sees atoms T × r_max away. Evaluating it on each rank's atoms plus a ghost
shell T × r_max thick (``mode ghost``) computes the shell's atoms again on every rank; for sub-domains of a few
thousand atoms the shell holds more atoms than the rank owns. ``forward_mp`` keeps the ghost shell at one r_max:

1. node features of layer 0 (the species embedding) are computed on owned and ghost atoms alike;
2. each interaction sends messages only to owned atoms (edges j → i with i owned, j owned or ghost);
3. before every later layer the owned atoms' features are sent to their ghost copies on the other ranks by
   ``firemlip::ghost_exchange``, an operator the LAMMPS plugin implements with LAMMPS' forward communication; its
   gradient (reverse communication) sums the ghost copies' gradients back onto their owners, so one
   ``autograd.grad`` gives the forces of the whole machine;
4. energies are summed over owned atoms; forces on ghost atoms go back to their owners with LAMMPS' usual reverse
   communication (``newton on``); the virial is the strain derivative, summed over ranks by LAMMPS.

The scheme is the one of LAMMPS' ML-IAP "unified" interface with message passing, as mace-torch uses it for its
Kokkos export; here it is written as a TorchScript method so that the plugin can run it on any LAMMPS with the
PLUGIN package. Supported: ``MACE``/``ScaleShiftMACE`` built from mace-torch's standard blocks (the MACE-MP-0
family and the models firemlip trains). Units: eV, Å.
"""

from typing import Any, Dict, List, Optional  # noqa: UP035  (TorchScript reads these annotations)

import torch
from e3nn.util.jit import compile_mode
from mace.calculators.lammps_mace import LAMMPS_MACE
from mace.modules.utils import prepare_graph
from mace.tools.scatter import scatter_sum

_LIB: Any = None  # keeps the Python registration of the operator alive


def ensure_ghost_exchange_op() -> None:
    """Register ``firemlip::ghost_exchange(Tensor feats, int nlocal) -> Tensor`` in this Python process.

    In Python there are no other ranks: the operator returns a copy of its input and passes gradients through.
    The LAMMPS plugin registers the same schema in C++ with the communicating implementation.
    """
    global _LIB
    if _LIB is not None:
        return
    try:
        torch.ops.firemlip.ghost_exchange  # noqa: B018  (already registered, e.g. by a loaded plugin)
        _LIB = "external"
        return
    except (AttributeError, RuntimeError):
        pass

    @torch.library.custom_op("firemlip::ghost_exchange", mutates_args=())
    def ghost_exchange(feats: torch.Tensor, nlocal: int) -> torch.Tensor:
        return feats.clone()

    @ghost_exchange.register_fake
    def _(feats: torch.Tensor, nlocal: int) -> torch.Tensor:
        return torch.empty_like(feats)

    def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None

    ghost_exchange.register_autograd(_backward)
    _LIB = ghost_exchange


def supports_mp(model: Any) -> Optional[str]:  # noqa: UP045
    """None when ``model`` can be split at its interactions for ``forward_mp``; else the reason it cannot."""
    from mace.modules.models import MACE

    if not isinstance(model, MACE):
        return f"{type(model).__name__} is not a mace-torch MACE model"
    for name in ("node_embedding", "spherical_harmonics", "radial_embedding", "interactions", "products",
                 "readouts", "atomic_energies_fn"):
        if not hasattr(model, name):
            return f"the model has no {name}"
    if hasattr(model, "joint_embedding"):
        return "models with extra per-graph embeddings are not split"
    if any(hasattr(inter, "conv_fusion") for inter in model.interactions):
        return "cuequivariance fused convolutions are not split"
    return None


@compile_mode("script")
class LammpsMaceMP(torch.nn.Module):
    """``forward``: mace-torch's ``LAMMPS_MACE`` (modes local and ghost); ``forward_mp``: mode mp (see module doc)."""

    def __init__(self, model: Any, head: Optional[str] = None) -> None:  # noqa: UP045
        super().__init__()
        ensure_ghost_exchange_op()
        self.lammps = LAMMPS_MACE(model, head=head) if head is not None else LAMMPS_MACE(model)
        self.register_buffer("atomic_numbers", model.atomic_numbers)
        self.register_buffer("r_max", model.r_max)
        self.register_buffer("num_interactions", model.num_interactions)
        self.register_buffer("mp_version", torch.tensor(1, dtype=torch.long))
        # doubles per atom exchanged before each layer after the first (the plugin sizes its buffers with it)
        widths = [int(p.linear.irreps_out.dim) for p in model.products][:-1]
        self.register_buffer("mp_width", torch.tensor(max(widths) if widths else 0, dtype=torch.long))
        # widths in call order: a rank that owns no atom replays the same exchanges with zeros
        self.register_buffer("mp_widths", torch.tensor(widths, dtype=torch.long))

    def forward(self, data: Dict[str, torch.Tensor], local_or_ghost: torch.Tensor,  # noqa: UP006
                compute_virials: bool = False) -> Dict[str, Optional[torch.Tensor]]:  # noqa: UP006, UP045
        return self.lammps(data, local_or_ghost, compute_virials)

    def _energies_and_forces(self, node_e0: torch.Tensor, node_es: List[torch.Tensor],  # noqa: UP006
                             feats_list: List[torch.Tensor], heads_local: torch.Tensor,  # noqa: UP006
                             keep_in_graph: torch.Tensor, positions: torch.Tensor,
                             displacement: Optional[torch.Tensor], cell: torch.Tensor,  # noqa: UP045
                             compute_virials: bool) -> Dict[str, Optional[torch.Tensor]]:  # noqa: UP006, UP045
        """Readouts of the owned atoms, their energy (eV), forces on all nodes (eV/Å) and the virial (eV)."""
        model = self.lammps.model
        local = torch.arange(heads_local.shape[0], device=positions.device)
        for i, readout in enumerate(model.readouts):
            feat_idx = -1 if len(model.readouts) == 1 else i
            node_es.append(readout(feats_list[feat_idx], heads_local)[local, heads_local])
        node_inter = torch.sum(torch.stack(node_es, dim=0), dim=0)
        if hasattr(model, "scale_shift"):
            node_inter = model.scale_shift(node_inter, heads_local)
        node_energy = node_e0.to(node_inter.dtype) + node_inter
        total = torch.sum(node_energy).reshape(1) + keep_in_graph
        virials: Optional[torch.Tensor] = None  # noqa: UP045
        if compute_virials and displacement is not None:
            grads = torch.autograd.grad([total], [positions, displacement], allow_unused=True)
            g_pos = grads[0]
            g_disp = grads[1]
            forces = -g_pos if g_pos is not None else torch.zeros_like(positions)
            virials = -g_disp if g_disp is not None else torch.zeros_like(cell)
        else:
            g = torch.autograd.grad([total], [positions], allow_unused=True)[0]
            forces = -g if g is not None else torch.zeros_like(positions)
        return {"total_energy_local": total, "node_energy": node_energy, "forces": forces, "virials": virials}

    @torch.jit.export
    def forward_mp(self, data: Dict[str, torch.Tensor], n_local: int,  # noqa: UP006
                   compute_virials: bool = False) -> Dict[str, Optional[torch.Tensor]]:  # noqa: UP006, UP045
        """Energy of the owned atoms (the first ``n_local`` nodes, eV), forces on all nodes (eV/Å), virial (eV)."""
        model = self.lammps.model
        data["head"] = self.lammps.head
        ctx = prepare_graph(data, compute_virials=False, compute_stress=False,
                            compute_displacement=compute_virials)
        positions = ctx.positions
        n_all = positions.shape[0]
        heads = ctx.node_heads.to(torch.int64)
        heads_local = heads[:n_local]
        node_attrs = data["node_attrs"]
        edge_index = data["edge_index"]
        local = torch.arange(n_local, device=positions.device)
        node_e0 = model.atomic_energies_fn(node_attrs[:n_local])[local, heads_local]
        node_feats = model.node_embedding(node_attrs)
        edge_attrs = model.spherical_harmonics(ctx.vectors)
        edge_feats, cutoff = model.radial_embedding(ctx.lengths, node_attrs, edge_index, model.atomic_numbers)
        if hasattr(model, "pair_repulsion"):
            pair = model.pair_repulsion_fn(ctx.lengths, node_attrs, edge_index, model.atomic_numbers)[:n_local]
        else:
            pair = torch.zeros_like(node_e0)
        node_es: List[torch.Tensor] = [pair]  # noqa: UP006
        feats_list: List[torch.Tensor] = []  # noqa: UP006
        # every rank must take part in every exchange, forward and backward, even one that owns no atom: a zero
        # term keeps each exchanged tensor in the graph of this rank's energy
        keep_in_graph = torch.zeros(1, dtype=positions.dtype, device=positions.device)
        for i, (interaction, product) in enumerate(zip(model.interactions, model.products)):  # noqa: B905
            if i > 0:
                pad = torch.zeros((n_all - n_local, node_feats.shape[1]), dtype=node_feats.dtype,
                                  device=node_feats.device)
                node_feats = torch.ops.firemlip.ghost_exchange(torch.cat([node_feats, pad], dim=0), n_local)
                keep_in_graph = keep_in_graph + 0.0 * torch.sum(node_feats)
            message, sc = interaction(node_attrs=node_attrs, node_feats=node_feats, edge_attrs=edge_attrs,
                                      edge_feats=edge_feats, edge_index=edge_index, cutoff=cutoff,
                                      first_layer=(i == 0))
            sc_local: Optional[torch.Tensor] = None  # noqa: UP045
            if sc is not None:
                sc_local = sc[:n_local]
            node_feats = product(node_feats=message[:n_local], sc=sc_local, node_attrs=node_attrs[:n_local])
            feats_list.append(node_feats)
        return self._energies_and_forces(node_e0, node_es, feats_list, heads_local, keep_in_graph, positions,
                                         ctx.displacement, data["cell"], compute_virials)


def _is_residual_block(block: Any) -> bool:
    from mace.modules.blocks import RealAgnosticResidualInteractionBlock

    return type(block) is RealAgnosticResidualInteractionBlock and not hasattr(block, "conv_fusion") and \
        all(hasattr(block, n) for n in ("skip_tp", "linear_up", "conv_tp_weights", "conv_tp", "linear", "reshape",
                                        "avg_num_neighbors"))


@compile_mode("script")
class LammpsMaceMPResidual(LammpsMaceMP):
    """``forward_mp`` for models whose interactions are all ``RealAgnosticResidualInteractionBlock`` (MACE-MP-0,
    the models firemlip trains): the skip connection and the output linear run on owned atoms only, and the
    features sent to ghost copies are those after ``linear_up`` (as mace-torch's own ML-IAP path does), so per-atom
    work is done once per atom on the whole machine."""

    def __init__(self, model: Any, head: Optional[str] = None) -> None:  # noqa: UP045
        super().__init__(model, head)
        widths = [int(inter.linear_up.irreps_out.dim) for inter in model.interactions][1:]
        self.mp_width = torch.tensor(max(widths) if widths else 0, dtype=torch.long)
        self.mp_widths = torch.tensor(widths, dtype=torch.long)

    @torch.jit.export
    def forward_mp(self, data: Dict[str, torch.Tensor], n_local: int,  # noqa: UP006
                   compute_virials: bool = False) -> Dict[str, Optional[torch.Tensor]]:  # noqa: UP006, UP045
        """Energy of the owned atoms (the first ``n_local`` nodes, eV), forces on all nodes (eV/Å), virial (eV)."""
        model = self.lammps.model
        data["head"] = self.lammps.head
        ctx = prepare_graph(data, compute_virials=False, compute_stress=False,
                            compute_displacement=compute_virials)
        positions = ctx.positions
        n_all = positions.shape[0]
        heads = ctx.node_heads.to(torch.int64)
        heads_local = heads[:n_local]
        node_attrs = data["node_attrs"]
        attrs_local = node_attrs[:n_local]
        edge_index = data["edge_index"]
        sender = edge_index[0]
        receiver = edge_index[1]
        local = torch.arange(n_local, device=positions.device)
        node_e0 = model.atomic_energies_fn(attrs_local)[local, heads_local]
        node_feats = model.node_embedding(node_attrs)
        edge_attrs = model.spherical_harmonics(ctx.vectors)
        edge_feats, cutoff = model.radial_embedding(ctx.lengths, node_attrs, edge_index, model.atomic_numbers)
        if hasattr(model, "pair_repulsion"):
            pair = model.pair_repulsion_fn(ctx.lengths, node_attrs, edge_index, model.atomic_numbers)[:n_local]
        else:
            pair = torch.zeros_like(node_e0)
        node_es: List[torch.Tensor] = [pair]  # noqa: UP006
        feats_list: List[torch.Tensor] = []  # noqa: UP006
        # every rank must take part in every exchange, forward and backward, even one that owns no atom: a zero
        # term keeps each exchanged tensor in the graph of this rank's energy
        keep_in_graph = torch.zeros(1, dtype=positions.dtype, device=positions.device)
        for i, (interaction, product) in enumerate(zip(model.interactions, model.products)):  # noqa: B905
            sc = interaction.skip_tp(node_feats[:n_local], attrs_local)
            up = interaction.linear_up(node_feats)
            if i > 0:  # node_feats are the owned atoms' (layer 0: the embedding of every node)
                pad = torch.zeros((n_all - n_local, up.shape[1]), dtype=up.dtype, device=up.device)
                up = torch.ops.firemlip.ghost_exchange(torch.cat([up, pad], dim=0), n_local)
                keep_in_graph = keep_in_graph + 0.0 * torch.sum(up)
            tp_weights = interaction.conv_tp_weights(edge_feats)
            if cutoff is not None:
                tp_weights = tp_weights * cutoff
            mji = interaction.conv_tp(up[sender], edge_attrs, tp_weights)
            message = scatter_sum(src=mji, index=receiver, dim=0, dim_size=n_local)
            message = interaction.linear(message) / interaction.avg_num_neighbors
            node_feats = product(node_feats=interaction.reshape(message), sc=sc, node_attrs=attrs_local)
            feats_list.append(node_feats)
        return self._energies_and_forces(node_e0, node_es, feats_list, heads_local, keep_in_graph, positions,
                                         ctx.displacement, data["cell"], compute_virials)


def mp_wrapper(model: Any, head: Optional[str] = None) -> LammpsMaceMP:  # noqa: UP045
    """The ``forward_mp`` wrapper for ``model``: the residual-block fast path where it applies, else the generic one."""
    if all(_is_residual_block(b) for b in model.interactions):
        return LammpsMaceMPResidual(model, head)
    return LammpsMaceMP(model, head)
