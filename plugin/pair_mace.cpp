/* ----------------------------------------------------------------------
   firemlip: pair_style mace, a LAMMPS plugin evaluating a TorchScript MACE model
   (the module written by `firemlip export` or mace-torch's `mace_create_lammps_model`).

   This file is part of the firemlip LAMMPS plugin. It is compiled against the
   LAMMPS headers and is therefore distributed under the GNU General Public
   License, version 2 (see plugin/LICENSE).

   Usage:
     pair_style mace [device auto|cpu|cuda] [dtype float32|float64] [mode auto|local|ghost] [threads N]
                     [freeze yes|no (default no)] [optimize yes|no (default yes)]
                     [executor profiling|legacy (default legacy)] [malloc tune|default (default tune)]
     pair_coeff * * model.lammps.pt El1 El2 ...   (one element symbol per LAMMPS atom type)

   device: auto = CUDA when this plugin's libtorch has CUDA and a GPU is visible, else CPU. With several
   MPI ranks on a node, rank k uses GPU (k mod number of GPUs), k = the rank's index on its node.
   dtype: checks that the exported model has this precision (export with `firemlip export --dtype ...`).
   At the end of each run the plugin prints where its time went (graph building, transfers, model).

   Three ways of building the graph:
   - local (default on one MPI rank): every ghost atom is mapped back to the owned atom it
     images; the graph has only the owned atoms and periodic edges carry integer cell shifts.
     The model runs on N atoms, the virial comes from the strain derivative (cell included).
   - ghost (default on several ranks; needs newton_pair on): the graph has owned and ghost
     atoms (ghost shell = num_interactions * r_max + skin), only owned atoms' energies are
     summed, forces on ghosts are sent back to their owners by LAMMPS' reverse communication.
   - mp (default on several ranks when the model has forward_mp): owned + ghost atoms within one r_max; messages
     go to owned atoms only and the node features of every layer after the first are sent to the ghost copies
     by forward communication (gradients come back by reverse communication), so the ghost shell is r_max + skin
     and every rank computes only its own atoms (python/firemlip/lammps/mp.py describes the model side).
   Units: metal (eV, Angstrom). Energies, forces, the global virial and per-atom energies are
   computed; per-atom virials are not.
------------------------------------------------------------------------- */

#include "pair_mace.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "utils.h"

#include <torch/library.h>

#include <torch/csrc/jit/api/module.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <cmath>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace LAMMPS_NS;

static const char *const ELEMENT_SYMBOLS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si",
    "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
    "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru",
    "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr",
    "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",
    "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac",
    "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf",
    "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
static const int NUM_SYMBOLS = sizeof(ELEMENT_SYMBOLS) / sizeof(ELEMENT_SYMBOLS[0]);

static int atomic_number_of(const std::string &sym)
{
  for (int z = 1; z < NUM_SYMBOLS; ++z)
    if (sym == ELEMENT_SYMBOLS[z]) return z;
  return -1;
}

/* ---------------------------------------------------------------------- */

/* ----------------------------------------------------------------------
   firemlip::ghost_exchange(Tensor feats, int nlocal) -> Tensor: the operator that exported models call between
   interaction layers in mode mp. Forward: ghost rows <- their owners' rows (LAMMPS forward communication).
   Backward: the adjoint, owners' rows += their ghosts' rows, ghost rows 0 (LAMMPS reverse communication).
   The pair style that is evaluating the model registers itself in active_exchange_pair for the call.
------------------------------------------------------------------------- */

namespace {
PairMACE *active_exchange_pair = nullptr;

PairMACE *exchange_pair()
{
  if (!active_exchange_pair)
    throw std::runtime_error("firemlip::ghost_exchange called outside pair_style mace mode mp");
  return active_exchange_pair;
}

class GhostExchange : public torch::autograd::Function<GhostExchange> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext *, const torch::Tensor &feats, int64_t)
  {
    return exchange_pair()->exchange_forward(feats);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext *,
                                               torch::autograd::tensor_list grads)
  {
    return {exchange_pair()->exchange_reverse(grads[0]), torch::Tensor()};
  }
};

torch::Tensor ghost_exchange(const torch::Tensor &feats, int64_t nlocal)
{
  return GhostExchange::apply(feats, nlocal);
}
}    // namespace

TORCH_LIBRARY(firemlip, m)
{
  m.def("ghost_exchange(Tensor feats, int nlocal) -> Tensor");
}

TORCH_LIBRARY_IMPL(firemlip, CompositeImplicitAutograd, m)
{
  m.impl("ghost_exchange", ghost_exchange);
}

static double wall_seconds()
{
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

/* index of this MPI rank among the ranks of its node (for the GPU choice) */
static int node_local_rank(MPI_Comm world)
{
  static const char *const envs[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK",
                                     "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "SLURM_LOCALID"};
#if defined(MPI_VERSION) && (MPI_VERSION >= 3)
  (void) envs;
  MPI_Comm node;
  int rank = 0;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
#else
  (void) world;
  for (const char *name : envs) {
    const char *v = std::getenv(name);
    if (v && *v) return std::atoi(v);
  }
  return 0;
#endif
}

PairMACE::PairMACE(LAMMPS *lmp) : Pair(lmp), device(torch::kCPU)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  cutghost = nullptr;

  mode_requested = MODE_AUTO;
  use_ghost = 0;
  use_mp = 0;
  model_has_mp = false;
  mp_width = 0;
  xchg_buf = nullptr;
  xchg_width = 0;
  nthreads = 0;
  freeze_model = 0;
  optimize_executor = 1;
  executor = EXEC_LEGACY;
  device_requested = DEVICE_AUTO;
  dtype_requested = -1;
  tune_malloc = 1;
  for (double &t : timers) t = 0.0;
  ncalls = 0;
  model_loaded = false;
  dtype = torch::kFloat64;
  r_max = 0.0;
  num_interactions = 0;
  nspecies = 0;
}

PairMACE::~PairMACE()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairMACE::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
}

/* ---------------------------------------------------------------------- */

void PairMACE::settings(int narg, char **arg)
{
  int iarg = 0;
  while (iarg < narg) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "Illegal pair_style mace command: {} needs a value", key);
    std::string val = arg[iarg + 1];
    if (key == "mode") {
      if (val == "auto") mode_requested = MODE_AUTO;
      else if (val == "local") mode_requested = MODE_LOCAL;
      else if (val == "ghost") mode_requested = MODE_GHOST;
      else if (val == "mp") mode_requested = MODE_MP;
      else error->all(FLERR, "Illegal pair_style mace mode {}: expected auto, local, ghost or mp", val);
    } else if (key == "threads") {
      nthreads = utils::inumeric(FLERR, val, false, lmp);
      if (nthreads < 0) error->all(FLERR, "Illegal pair_style mace threads {}", val);
    } else if (key == "freeze") {
      freeze_model = utils::logical(FLERR, val, false, lmp);
    } else if (key == "optimize") {
      optimize_executor = utils::logical(FLERR, val, false, lmp);
    } else if (key == "executor") {
      if (val == "profiling") executor = EXEC_PROFILING;
      else if (val == "legacy") executor = EXEC_LEGACY;
      else error->all(FLERR, "Illegal pair_style mace executor {}: expected profiling or legacy", val);
    } else if (key == "malloc") {
      if (val == "tune") tune_malloc = 1;
      else if (val == "default") tune_malloc = 0;
      else error->all(FLERR, "Illegal pair_style mace malloc {}: expected tune or default", val);
    } else if (key == "device") {
      if (val == "auto") device_requested = DEVICE_AUTO;
      else if (val == "cpu") device_requested = DEVICE_CPU;
      else if (val == "cuda") device_requested = DEVICE_CUDA;
      else error->all(FLERR, "Illegal pair_style mace device {}: expected auto, cpu or cuda", val);
    } else if (key == "dtype") {
      if (val == "float64") dtype_requested = (int) torch::kFloat64;
      else if (val == "float32") dtype_requested = (int) torch::kFloat32;
      else error->all(FLERR, "Illegal pair_style mace dtype {}: expected float32 or float64", val);
    } else {
      error->all(FLERR, "Illegal pair_style mace keyword {}: expected device, dtype, mode, threads, freeze, "
                 "optimize, executor or malloc", key);
    }
    iarg += 2;
  }
}

/* ----------------------------------------------------------------------
   A torch.save() file (what mace-torch writes as *.model) is a zip archive whose top folder holds data.pkl but
   none of TorchScript's constants.pkl: recognise it to tell the user to export the model first. Only the names
   of the outer archive's central directory count (e3nn stores whole TorchScript archives inside a .model).
------------------------------------------------------------------------- */

static uint64_t read_le(const std::string &b, size_t pos, int nbytes)
{
  uint64_t v = 0;
  if (pos + nbytes > b.size()) return 0;
  for (int k = nbytes - 1; k >= 0; --k) v = (v << 8) | (unsigned char) b[pos + k];
  return v;
}

static std::vector<std::string> zip_entry_names(const std::string &b)
{
  std::vector<std::string> names;
  if (b.size() < 22) return names;
  size_t eocd = std::string::npos;
  const size_t lowest = b.size() > 65557 ? b.size() - 65557 : 0;
  for (size_t i = b.size() - 22 + 1; i-- > lowest;)
    if (b.compare(i, 4, "PK\x05\x06") == 0) {
      eocd = i;
      break;
    }
  if (eocd == std::string::npos) return names;
  uint64_t count = read_le(b, eocd + 10, 2), offset = read_le(b, eocd + 16, 4);
  if ((count == 0xFFFF || offset == 0xFFFFFFFF) && eocd >= 20 && b.compare(eocd - 20, 4, "PK\x06\x07") == 0) {
    const uint64_t z64 = read_le(b, eocd - 20 + 8, 8);  // zip64 end of central directory record
    if (z64 + 56 <= b.size() && b.compare(z64, 4, "PK\x06\x06") == 0) {
      count = read_le(b, z64 + 32, 8);
      offset = read_le(b, z64 + 48, 8);
    }
  }
  size_t pos = offset;
  for (uint64_t k = 0; k < count && pos + 46 <= b.size() && b.compare(pos, 4, "PK\x01\x02") == 0; ++k) {
    const size_t nlen = read_le(b, pos + 28, 2), xlen = read_le(b, pos + 30, 2), clen = read_le(b, pos + 32, 2);
    if (pos + 46 + nlen > b.size()) break;
    names.push_back(b.substr(pos + 46, nlen));
    pos += 46 + nlen + xlen + clen;
  }
  return names;
}

static bool is_raw_torch_pickle(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) return false;
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 4 || bytes.compare(0, 4, "PK\x03\x04") != 0) return false;
  bool data = false, constants = false;
  for (const auto &name : zip_entry_names(bytes)) {
    const size_t slash = name.find('/');
    if (slash == std::string::npos || name.find('/', slash + 1) != std::string::npos) continue;  // top folder only
    const std::string leaf = name.substr(slash + 1);
    data = data || leaf == "data.pkl";
    constants = constants || leaf == "constants.pkl";
  }
  return data && !constants;
}

static std::string strip_model_suffix(const std::string &path)
{
  const std::string suffix = ".model";
  if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0)
    return path.substr(0, path.size() - suffix.size());
  return path;
}

/* ---------------------------------------------------------------------- */

void PairMACE::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "Incorrect args for pair_coeff mace: expected * * model.lammps.pt and {} element "
               "symbol(s), one per atom type, got {} argument(s)",
               ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff mace must start with * *");

  const std::string path = arg[2];
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good())
      error->all(FLERR, "pair_coeff mace: model file {} not found (expected a LAMMPS model written by "
                 "`firemlip export`)", path);
  }
  try {
    model = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception &e) {
    if (is_raw_torch_pickle(path))
      error->all(FLERR, "pair_coeff mace: {} is a MACE .model, not a LAMMPS model: run `firemlip export {} "
                 "-o {}.lammps.pt` and give that file", path, path, strip_model_suffix(path));
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    error->all(FLERR, "pair_style mace cannot load TorchScript model {}: {}", path, msg);
  }
  model.eval();

  try {
    r_max = model.attr("r_max").toTensor().item<double>();
    num_interactions = (int) model.attr("num_interactions").toTensor().item<int64_t>();
    model_has_mp = model.find_method("forward_mp").has_value() && model.hasattr("mp_width") &&
        model.hasattr("mp_widths");
    mp_width = model_has_mp ? (int) model.attr("mp_width").toTensor().item<int64_t>() : 0;
    mp_widths.clear();
    if (model_has_mp) {
      torch::Tensor w = model.attr("mp_widths").toTensor().to(torch::kInt64).contiguous();
      for (int64_t k = 0; k < w.numel(); ++k) mp_widths.push_back((int) w.data_ptr<int64_t>()[k]);
    }
    torch::Tensor z = model.attr("atomic_numbers").toTensor().to(torch::kInt64).contiguous();
    nspecies = (int) z.numel();
    std::vector<int64_t> zs(z.data_ptr<int64_t>(), z.data_ptr<int64_t>() + nspecies);
    for (const auto &p : model.parameters()) {
      dtype = p.scalar_type();
      break;
    }

    type_to_species.assign(ntypes + 1, -1);
    for (int t = 1; t <= ntypes; ++t) {
      std::string sym = arg[2 + t];
      if (sym == "NULL") continue;
      int zt = atomic_number_of(sym);
      if (zt < 0) error->all(FLERR, "pair_coeff mace: unknown element symbol {} for type {}", sym, t);
      auto it = std::find(zs.begin(), zs.end(), (int64_t) zt);
      if (it == zs.end())
        error->all(FLERR, "pair_coeff mace: element {} (type {}) is not in model {}", sym, t, path);
      type_to_species[t] = (int) (it - zs.begin());
    }
  } catch (const c10::Error &e) {
    error->all(FLERR, "pair_style mace: {} is not a MACE LAMMPS model (missing r_max, "
               "num_interactions or atomic_numbers)", path);
  }

  const char *model_dtype = dtype == torch::kFloat64 ? "float64" : "float32";
  if (dtype_requested >= 0 && (torch::Dtype) dtype_requested != dtype)
    error->all(FLERR, "pair_style mace dtype {}: model {} is {}; export a {} model with `firemlip export MODEL "
               "--dtype {}`", dtype_requested == (int) torch::kFloat64 ? "float64" : "float32", path, model_dtype,
               dtype_requested == (int) torch::kFloat64 ? "float64" : "float32",
               dtype_requested == (int) torch::kFloat64 ? "float64" : "float32");

  const bool cuda_ok = torch::cuda::is_available();
  if (device_requested == DEVICE_CUDA && !cuda_ok)
    error->all(FLERR, "pair_style mace device cuda: no CUDA device available to this plugin's libtorch (a CPU "
               "build of torch, or no visible GPU); use device cpu or auto, or build the plugin against a CUDA torch");
  if (device_requested == DEVICE_CUDA || (device_requested == DEVICE_AUTO && cuda_ok)) {
    const int ngpu = (int) torch::cuda::device_count();
    const int index = node_local_rank(world) % std::max(ngpu, 1);
    device = torch::Device(torch::kCUDA, (c10::DeviceIndex) index);
  } else {
    device = torch::Device(torch::kCPU);
  }
  try {
    model.to(device);
  } catch (const std::exception &e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    error->one(FLERR, "pair_style mace: cannot move model {} to {}: {}", path, device.str(), msg);
  }
#if defined(__GLIBC__)
  if (tune_malloc && device.is_cpu()) {
    // Each model call allocates and frees edge-sized tensors (tens of MB); glibc returns such blocks to the OS
    // (mmap/munmap) and every call pays the page faults again. Keeping them in the heap was measured at
    // 280 -> 228 ms per 1000-atom evaluation (benchmarks/results/bench_lammps_md_*.json).
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  }
#endif

  if (freeze_model) {
    try {
      model = torch::jit::freeze(model);
    } catch (const std::exception &e) {
      if (comm->me == 0) error->warning(FLERR, "pair_style mace: could not freeze the model; using it as is");
    }
  }
  torch::jit::setGraphExecutorOptimize(optimize_executor != 0);
  torch::jit::getProfilingMode() = (executor == EXEC_PROFILING);
  if (nthreads > 0) torch::set_num_threads(nthreads);
  model_loaded = true;

  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j)
      setflag[i][j] = (type_to_species[i] >= 0 && type_to_species[j] >= 0) ? 1 : 0;

  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style mace: model {} with {} element(s), r_max = {} A, {} interaction(s), {} on {}\n",
                   path, nspecies, r_max, num_interactions, model_dtype, device.str());
}

/* ---------------------------------------------------------------------- */

void PairMACE::init_style()
{
  if (!model_loaded) error->all(FLERR, "pair_style mace: pair_coeff * * model.lammps.pt ... is missing");
  if (atom->tag_enable == 0) error->all(FLERR, "pair_style mace requires atom IDs");

  use_mp = 0;
  if (mode_requested == MODE_GHOST) use_ghost = 1;
  else if (mode_requested == MODE_LOCAL) use_ghost = 0;
  else if (mode_requested == MODE_MP) use_ghost = use_mp = 1;
  else use_ghost = use_mp = (comm->nprocs > 1) ? 1 : 0;
  if (use_mp && !model_has_mp) {
    use_mp = 0;
    if (comm->me == 0)
      error->warning(FLERR, "pair_style mace: the model has no forward_mp (exported by an older firemlip, by "
                     "mace_create_lammps_model, or not splittable); using mode ghost");
  }

  if (!use_ghost && comm->nprocs > 1)
    error->all(FLERR, "pair_style mace mode local needs a single MPI rank; use mode mp, ghost or auto");

  if (use_ghost) {
    if (force->newton_pair == 0)
      error->all(FLERR, "pair_style mace with ghost atoms (several MPI ranks) requires newton_pair on");
  }
  if (use_mp) {
    // ghost shell of one r_max (+ skin, LAMMPS' default communication cut-off): features travel between layers
    neighbor->add_request(this, NeighConst::REQ_FULL);
    comm_forward = comm_reverse = std::max(mp_width, 1);
  } else if (use_ghost) {
    ghostneigh = 1;
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
    // every owned atom's energy depends on atoms num_interactions * r_max away
    double cut = num_interactions * r_max + neighbor->skin;
    if (comm->cutghostuser < cut) comm->cutghostuser = cut;
  } else {
    ghostneigh = 0;
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
  if (use_mp) ghostneigh = 0;
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style mace: {} graph mode\n",
                   use_mp ? "message-passing (MPI, one-r_max ghost shell)"
                          : (use_ghost ? "ghost-atom (MPI, num_interactions * r_max ghost shell)"
                                       : "local (periodic shifts, one rank)"));
}

double PairMACE::init_one(int i, int j)
{
  if (setflag[i][j] == 0 && setflag[j][i] == 0)
    error->all(FLERR, "pair_style mace: type {} or {} has no element (NULL in pair_coeff)", i, j);
  cutghost[i][j] = cutghost[j][i] = r_max;
  return r_max;
}

/* ---------------------------------------------------------------------- */

void PairMACE::run_model(int nnodes, int nlocal_nodes, const std::vector<double> &pos,
                         const std::vector<int64_t> &species, const std::vector<int64_t> &edges_snd,
                         const std::vector<int64_t> &edges_rcv, const std::vector<double> &shifts,
                         const std::vector<double> &unit_shifts, const double cell[9], bool want_virial,
                         double &energy, std::vector<double> &forces, std::vector<double> &node_energy,
                         double virial6[6])
{
  const int64_t n = nnodes;
  const int64_t ne = (int64_t) edges_snd.size();
  const double t0 = wall_seconds();
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  const auto on_device = torch::TensorOptions().dtype(dtype).device(device);

  // host arrays -> tensors in the model's dtype on the model's device (one copy each)
  torch::Tensor positions = torch::from_blob((void *) pos.data(), {n, 3}, f64).to(on_device);
  torch::Tensor t_shifts = torch::from_blob((void *) shifts.data(), {ne, 3}, f64).to(on_device);
  torch::Tensor t_unit = torch::from_blob((void *) unit_shifts.data(), {ne, 3}, f64).to(on_device);
  torch::Tensor t_cell = torch::from_blob((void *) cell, {3, 3}, f64).to(on_device);
  torch::Tensor edge_index = torch::empty({2, ne}, i64);
  if (ne > 0) {
    std::memcpy(edge_index.data_ptr<int64_t>(), edges_snd.data(), ne * sizeof(int64_t));
    std::memcpy(edge_index.data_ptr<int64_t>() + ne, edges_rcv.data(), ne * sizeof(int64_t));
  }
  edge_index = edge_index.to(device);
  torch::Tensor sp = torch::from_blob((void *) species.data(), {n}, i64).to(device);
  torch::Tensor node_attrs = torch::zeros({n, (int64_t) nspecies}, on_device);
  node_attrs.scatter_(1, sp.unsqueeze(1), 1.0);
  torch::Tensor batch = torch::zeros({n}, i64.device(device));
  torch::Tensor ptr = torch::tensor({(int64_t) 0, n}, i64).to(device);
  torch::Tensor local_or_ghost = torch::zeros({n}, on_device);
  if (nlocal_nodes > 0) local_or_ghost.narrow(0, 0, nlocal_nodes).fill_(1.0);

  c10::Dict<std::string, torch::Tensor> data;
  data.insert("positions", positions);
  data.insert("edge_index", edge_index);
  data.insert("shifts", t_shifts);
  data.insert("unit_shifts", t_unit);
  data.insert("cell", t_cell);
  data.insert("node_attrs", node_attrs);
  data.insert("batch", batch);
  data.insert("ptr", ptr);
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
  const double t1 = wall_seconds();

  c10::IValue result;
  try {
    if (use_mp) {
      active_exchange_pair = this;
      result = model.get_method("forward_mp")({data, (int64_t) nlocal_nodes, want_virial});
      active_exchange_pair = nullptr;
    } else {
      result = model.forward({data, local_or_ghost, want_virial});
    }
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
  } catch (const std::exception &e) {
    std::string msg = e.what();
    msg = msg.substr(0, msg.find('\n'));
    error->one(FLERR, "pair_style mace: model evaluation failed: {}", msg);
  }
  const double t2 = wall_seconds();
  timers[TIMER_TO_DEVICE] += t1 - t0;
  timers[TIMER_MODEL] += t2 - t1;

  auto out = result.toGenericDict();
  auto e_iv = out.at("total_energy_local");
  auto f_iv = out.at("forces");
  if (e_iv.isNone() || f_iv.isNone()) error->one(FLERR, "pair_style mace: the model returned no energy");
  energy = e_iv.toTensor().to(torch::kCPU, torch::kFloat64).sum().item<double>();

  torch::Tensor f = f_iv.toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
  forces.assign(f.data_ptr<double>(), f.data_ptr<double>() + 3 * n);

  auto ne_iv = out.at("node_energy");
  if (!ne_iv.isNone()) {
    torch::Tensor ee = ne_iv.toTensor().to(torch::kCPU, torch::kFloat64).contiguous();
    node_energy.assign(ee.data_ptr<double>(), ee.data_ptr<double>() + n);
  } else {
    node_energy.assign(n, 0.0);
  }

  for (int k = 0; k < 6; ++k) virial6[k] = 0.0;
  if (want_virial) {
    auto v_iv = out.at("virials");
    if (!v_iv.isNone()) {
      torch::Tensor v = v_iv.toTensor().to(torch::kCPU, torch::kFloat64).reshape({3, 3}).contiguous();
      const double *w = v.data_ptr<double>();
      // LAMMPS order xx, yy, zz, xy, xz, yz; the model's virial is -dE/d(strain), symmetric
      virial6[0] = w[0];
      virial6[1] = w[4];
      virial6[2] = w[8];
      virial6[3] = 0.5 * (w[1] + w[3]);
      virial6[4] = 0.5 * (w[2] + w[6]);
      virial6[5] = 0.5 * (w[5] + w[7]);
    }
  }
  timers[TIMER_FROM_DEVICE] += wall_seconds() - t2;
}

/* ---------------------------------------------------------------------- */

void PairMACE::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const double t_start = wall_seconds();
  double t_model_start = t_start, t_model_end = t_start;
  if (vflag_atom) error->all(FLERR, "pair_style mace does not compute per-atom virials");

  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  tagint *tag = atom->tag;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double rmax2 = r_max * r_max;

  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;

  // cell: rows are the LAMMPS box vectors a = (xprd,0,0), b = (xy,yprd,0), c = (xz,yz,zprd)
  const double *h = domain->h;
  double cell[9] = {h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]};

  std::vector<double> pos;
  std::vector<int64_t> species, snd, rcv;
  std::vector<double> shifts, unit_shifts;
  int nnodes, nlocal_nodes;

  if (!use_ghost) {
    // ----- local mode: owned atoms only, ghost neighbours folded back with integer cell shifts
    nnodes = nlocal_nodes = nlocal;
    tagint maxtag = 0;
    for (int i = 0; i < nlocal; ++i) maxtag = std::max(maxtag, tag[i]);
    tag_to_local.assign((size_t) maxtag + 1, -1);
    for (int i = 0; i < nlocal; ++i) tag_to_local[tag[i]] = i;

    pos.resize(3 * (size_t) nlocal);
    species.resize(nlocal);
    for (int i = 0; i < nlocal; ++i) {
      pos[3 * i] = x[i][0];
      pos[3 * i + 1] = x[i][1];
      pos[3 * i + 2] = x[i][2];
      species[i] = type_to_species[type[i]];
    }
    for (int ii = 0; ii < inum; ++ii) {
      const int i = ilist[ii];
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; ++jj) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz >= rmax2) continue;
        int jl = j;
        if (j >= nlocal) {
          jl = (tag[j] <= maxtag) ? tag_to_local[tag[j]] : -1;
          if (jl < 0) error->one(FLERR, "pair_style mace: ghost atom {} has no owned image", tag[j]);
        }
        // x[j] = x[jl] + n0 a + n1 b + n2 c
        const double sx = x[j][0] - x[jl][0], sy = x[j][1] - x[jl][1], sz = x[j][2] - x[jl][2];
        const double n2 = std::nearbyint(sz / h[2]);
        const double n1 = std::nearbyint((sy - n2 * h[3]) / h[1]);
        const double n0 = std::nearbyint((sx - n1 * h[5] - n2 * h[4]) / h[0]);
        snd.push_back(i);
        rcv.push_back(jl);
        unit_shifts.push_back(n0);
        unit_shifts.push_back(n1);
        unit_shifts.push_back(n2);
        shifts.push_back(n0 * h[0] + n1 * h[5] + n2 * h[4]);
        shifts.push_back(n1 * h[1] + n2 * h[3]);
        shifts.push_back(n2 * h[2]);
      }
    }
  } else {
    // ----- ghost and mp modes: owned + ghost atoms as nodes, plain Cartesian edges, no shifts.
    // mp: edges j -> i only into owned atoms i (the ghost shell is one r_max; features come by communication);
    // ghost: edges among owned and ghost atoms alike (ghost shell num_interactions * r_max).
    nnodes = nall;
    nlocal_nodes = nlocal;
    pos.resize(3 * (size_t) nall);
    species.resize(nall);
    for (int i = 0; i < nall; ++i) {
      pos[3 * i] = x[i][0];
      pos[3 * i + 1] = x[i][1];
      pos[3 * i + 2] = x[i][2];
      int s = type_to_species[type[i]];
      species[i] = s < 0 ? 0 : s;
    }
    const int ntot = use_mp ? inum : inum + list->gnum;
    for (int ii = 0; ii < ntot; ++ii) {
      const int i = ilist[ii];
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; ++jj) {
        const int j = jlist[jj] & NEIGHMASK;
        const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
        if (dx * dx + dy * dy + dz * dz >= rmax2) continue;
        snd.push_back(use_mp ? j : i);
        rcv.push_back(use_mp ? i : j);
      }
    }
    shifts.assign(3 * snd.size(), 0.0);
    unit_shifts.assign(3 * snd.size(), 0.0);
  }

  const bool want_virial = vflag_global != 0;
  double energy = 0.0, vir[6];
  std::vector<double> fout, eout;
  t_model_start = wall_seconds();
  if (use_mp && nlocal == 0) {
    // a rank that owns no atom: no energy, no force, but it takes part in every exchange of the other ranks'
    // model evaluation (forward in layer order, then the gradients in reverse), with zeros
    for (int w : mp_widths) exchange_forward(torch::zeros({(int64_t) nall, (int64_t) w}, torch::kFloat64));
    for (auto it = mp_widths.rbegin(); it != mp_widths.rend(); ++it)
      exchange_reverse(torch::zeros({(int64_t) nall, (int64_t) *it}, torch::kFloat64));
    fout.assign(3 * (size_t) nnodes, 0.0);
    eout.assign(nnodes, 0.0);
    for (int k = 0; k < 6; ++k) vir[k] = 0.0;
  } else if (nnodes > 0) {
    run_model(nnodes, nlocal_nodes, pos, species, snd, rcv, shifts, unit_shifts, cell, want_virial,
              energy, fout, eout, vir);
  } else {
    for (int k = 0; k < 6; ++k) vir[k] = 0.0;
  }
  t_model_end = wall_seconds();

  for (int i = 0; i < nnodes; ++i) {
    f[i][0] += fout[3 * i];
    f[i][1] += fout[3 * i + 1];
    f[i][2] += fout[3 * i + 2];
  }
  if (eflag_global) eng_vdwl += energy;
  if (eflag_atom)
    for (int i = 0; i < nlocal_nodes; ++i) eatom[i] += eout[i];
  if (want_virial)
    for (int k = 0; k < 6; ++k) virial[k] += vir[k];
  const double t_end = wall_seconds();
  timers[TIMER_GRAPH] += t_model_start - t_start;
  // device->host: what run_model spent after the model returned, plus adding the forces into LAMMPS' arrays
  timers[TIMER_FROM_DEVICE] += t_end - t_model_end;
  ncalls++;
}

/* ----------------------------------------------------------------------
   end of a run: where the time of pair_style mace went (rank 0 prints the mean over ranks)
------------------------------------------------------------------------- */

void PairMACE::finish()
{
  if (ncalls == 0) return;
  double sum[NTIMERS];
  MPI_Allreduce(timers, sum, NTIMERS, MPI_DOUBLE, MPI_SUM, world);
  const double nprocs = comm->nprocs;
  for (double &t : sum) t /= nprocs;
  const double total = sum[0] + sum[1] + sum[2] + sum[3];
  if (comm->me == 0 && total > 0.0) {
    utils::logmesg(lmp,
                   "pair_style mace timers ({} calls on {}, mean over {} rank(s)): graph {:.4g} s ({:.1f}%), "
                   "to device {:.4g} s ({:.1f}%), model {:.4g} s ({:.1f}%), from device {:.4g} s ({:.1f}%); "
                   "{:.4g} ms/call\n",
                   ncalls, device.str(), comm->nprocs, sum[0], 100 * sum[0] / total, sum[1], 100 * sum[1] / total,
                   sum[2], 100 * sum[2] / total, sum[3], 100 * sum[3] / total, 1000 * total / ncalls);
  }
  // peak resident memory of each rank (VmHWM, Linux): model, graph and LAMMPS together
  double hwm_mib = 0.0;
  {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmHWM:", 0) == 0) hwm_mib = std::atof(line.c_str() + 6) / 1024.0;
  }
  double hwm_max = 0.0, hwm_sum = 0.0;
  MPI_Allreduce(&hwm_mib, &hwm_max, 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&hwm_mib, &hwm_sum, 1, MPI_DOUBLE, MPI_SUM, world);
  if (comm->me == 0 && hwm_max > 0.0)
    utils::logmesg(lmp, "pair_style mace peak memory per rank (VmHWM): max {:.1f} MiB, mean {:.1f} MiB\n", hwm_max,
                   hwm_sum / comm->nprocs);
  for (double &t : timers) t = 0.0;
  ncalls = 0;
}

/* ----------------------------------------------------------------------
   mode mp: per-atom feature exchange between layers (see firemlip::ghost_exchange above)
------------------------------------------------------------------------- */

torch::Tensor PairMACE::exchange_forward(const torch::Tensor &feats)
{
  const int width = (int) feats.size(1);
  if (width > comm_forward)
    error->one(FLERR, "pair_style mace: layer features of width {} exceed the communication buffer ({})", width,
               comm_forward);
  torch::Tensor host = feats.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  xchg_buf = host.data_ptr<double>();
  xchg_width = width;
  comm->forward_comm(this, width);
  xchg_buf = nullptr;
  return host.to(feats.device(), feats.scalar_type());
}

torch::Tensor PairMACE::exchange_reverse(const torch::Tensor &grads)
{
  const int width = (int) grads.size(1);
  torch::Tensor host = grads.detach().to(torch::kCPU, torch::kFloat64).contiguous().clone();
  xchg_buf = host.data_ptr<double>();
  xchg_width = width;
  comm->reverse_comm(this, width);
  xchg_buf = nullptr;
  const int64_t nlocal = atom->nlocal;
  if (host.size(0) > nlocal) host.narrow(0, nlocal, host.size(0) - nlocal).zero_();
  return host.to(grads.device(), grads.scalar_type());
}

int PairMACE::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  const int w = xchg_width;
  for (int i = 0; i < n; ++i) std::memcpy(buf + (size_t) i * w, xchg_buf + (size_t) list[i] * w, w * sizeof(double));
  return n * w;
}

void PairMACE::unpack_forward_comm(int n, int first, double *buf)
{
  const int w = xchg_width;
  std::memcpy(xchg_buf + (size_t) first * w, buf, (size_t) n * w * sizeof(double));
}

int PairMACE::pack_reverse_comm(int n, int first, double *buf)
{
  const int w = xchg_width;
  std::memcpy(buf, xchg_buf + (size_t) first * w, (size_t) n * w * sizeof(double));
  return n * w;
}

void PairMACE::unpack_reverse_comm(int n, int *list, double *buf)
{
  const int w = xchg_width;
  for (int i = 0; i < n; ++i) {
    double *row = xchg_buf + (size_t) list[i] * w;
    const double *src = buf + (size_t) i * w;
    for (int k = 0; k < w; ++k) row[k] += src[k];
  }
}
