/* -*- c++ -*- ----------------------------------------------------------
   firemlip: pair_style mace, a LAMMPS plugin evaluating a TorchScript MACE model.

   This file is part of the firemlip LAMMPS plugin. It is compiled against the
   LAMMPS headers and is therefore distributed under the GNU General Public
   License, version 2 (see plugin/LICENSE).
------------------------------------------------------------------------- */

#ifndef FIREMLIP_PAIR_MACE_H
#define FIREMLIP_PAIR_MACE_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMACE : public Pair {
 public:
  PairMACE(class LAMMPS *);
  ~PairMACE() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void finish() override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // mode mp: fill the ghost rows of per-atom features [nall, width] from their owners (forward communication),
  // and sum ghost rows' gradients onto their owners (reverse communication). Called by firemlip::ghost_exchange.
  torch::Tensor exchange_forward(const torch::Tensor &feats);
  torch::Tensor exchange_reverse(const torch::Tensor &grads);

 protected:
  enum { MODE_AUTO = 0, MODE_LOCAL = 1, MODE_GHOST = 2, MODE_MP = 3 };
  enum { DEVICE_AUTO = 0, DEVICE_CPU = 1, DEVICE_CUDA = 2 };
  enum { EXEC_PROFILING = 0, EXEC_LEGACY = 1 };
  enum { TIMER_GRAPH = 0, TIMER_TO_DEVICE = 1, TIMER_MODEL = 2, TIMER_FROM_DEVICE = 3, NTIMERS = 4 };

  int mode_requested;    // auto | local | ghost (pair_style keyword)
  int use_ghost;         // mode chosen in init_style(): ghost atoms are graph nodes (ghost or mp)
  int use_mp;            // mode mp: one-r_max ghost shell, features exchanged between layers
  bool model_has_mp;     // the exported model has forward_mp (firemlip export of a splittable model)
  int mp_width;          // doubles per atom exchanged between layers (the largest)
  std::vector<int> mp_widths;  // width of each exchange, in call order
  double *xchg_buf;      // the [nall, xchg_width] doubles being communicated
  int xchg_width;
  int nthreads;          // torch intra-op threads (0: leave torch's default)
  int freeze_model;      // torch::jit::freeze the module after loading
  int optimize_executor; // graph-executor optimisation on/off
  int executor;          // TorchScript executor: profiling (torch's default) or legacy
  int device_requested;  // auto | cpu | cuda (pair_style keyword)
  int dtype_requested;   // -1: the model's own; else a torch::Dtype the model must have
  int tune_malloc;       // CPU: keep freed large blocks for reuse instead of returning them to the OS
  torch::Device device;  // where the model and the graph tensors live
  double timers[NTIMERS]; // wall seconds: graph building, host->device, model (forward+forces), device->host
  long ncalls;

  torch::jit::Module model;
  bool model_loaded;
  torch::Dtype dtype;
  double r_max;           // model cut-off (Angstrom)
  int num_interactions;   // message-passing layers (receptive field = num_interactions * r_max)
  int nspecies;           // number of elements known to the model
  std::vector<int> type_to_species;    // LAMMPS type -> model species index (-1: not mapped)
  std::vector<int> tag_to_local;       // scratch: atom ID -> owned local index (local mode)

  void allocate();
  void run_model(int nnodes, int nlocal_nodes, const std::vector<double> &pos,
                 const std::vector<int64_t> &species, const std::vector<int64_t> &edges_snd,
                 const std::vector<int64_t> &edges_rcv, const std::vector<double> &shifts,
                 const std::vector<double> &unit_shifts, const double cell[9], bool want_virial,
                 double &energy, std::vector<double> &forces, std::vector<double> &node_energy,
                 double virial6[6]);
};

}    // namespace LAMMPS_NS

#endif
