"""`packs install FILE | list | remove NAME`: the optional model packs (engine.packs), e.g. the Languages pack
(multilingual speech and translation) that the core download leaves out.

Registered by desktop.cli through COMMAND_MODULES.
"""

from __future__ import annotations

import json
import sys


def add_commands(command) -> None:
    p = command("packs", cmd_packs_list, "install, list or remove optional model packs (e.g. the Languages pack)")
    sub = p.add_subparsers(dest="pack_command", metavar="ACTION")
    install = sub.add_parser("install", help="install a pack from its file (FusionDesk-languages.pack)",
                             description="check a pack file (every model file's sha256) and install it into your "
                                         "data folder; an installed copy is replaced only once the new one checked")
    install.add_argument("file", metavar="FILE")
    install.set_defaults(handler=cmd_packs_install)
    listing = sub.add_parser("list", help="the packs installed and available (the default)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_packs_list)
    remove = sub.add_parser("remove", help="delete an installed pack from your data folder")
    remove.add_argument("name", metavar="NAME", help="the pack's name, as `fusiondesk packs list` shows it")
    remove.set_defaults(handler=cmd_packs_remove)


def _core_bundle():
    """The app's own bundle without any pack: a pack must match its bundle_version."""
    from engine.manifest import ModelBundle

    return ModelBundle(packs=False)


def cmd_packs_install(args) -> int:
    from engine.packs import install_pack

    pack = install_pack(args.file, _core_bundle().bundle_version)
    print(f"installed the {pack.title} pack ({pack.bytes / 1e6:.0f} MB, {len(pack.entries)} models: "
          f"{', '.join(entry.id for entry in pack.entries)}) into {pack.folder}")
    return 0


def cmd_packs_remove(args) -> int:
    from engine.packs import remove_pack

    folder = remove_pack(args.name)
    print(f"removed the {args.name} pack from {folder}")
    return 0


def size_text(size: int | None) -> str:
    return "-" if size is None else f"{size / 1e6:.0f} MB"


def cmd_packs_list(args) -> int:
    from engine.manifest import ModelBundle
    from engine.packs import pack_rows

    rows = pack_rows(ModelBundle())
    if getattr(args, "json", False):
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print(f"{'name':12} {'title':12} {'size':>7}  state")
    for row in rows:
        print(f"{row['name']:12} {row['title']:12} {size_text(row['bytes']):>7}  {row['state']}")
        if row["where"]:
            print(f"{'':12} at {row['where']}")
        elif row["file"]:
            print(f"{'':12} install it with: fusiondesk packs install {row['file']}")
    return 0
