import type { BinaryPackage, Relation, RelationGroup } from '../distro/deb/types.js';
import { type ProviderEntry, priorityRank, type Universe } from './universe.js';

/**
 * A model of apt's (2.6) dependency marking, `pkgDepCache::MarkInstall`, which is what picks
 * packages when mmdebstrap runs `apt-get install` / `dist-upgrade` with recommends off.
 *
 * Lifecycle: one Solver per resolve. `runStage` is called once per mmdebstrap stage; what a
 * stage marks becomes "installed" for the next (apt's CurrentVer), and protection is reset,
 * as each stage is a fresh apt run. `selected()` reads the result. Nothing here throws for
 * unsatisfiable input: failures are recorded per package (`failureOf`) and the caller
 * turns them into errors (explain.ts), so the solver can try alternatives the way apt does.
 *
 * The rules, in apt's terms:
 * - Only candidates are installed (Universe decides them). A dependency group (`a | b`) is
 *   satisfied when any alternative is satisfied by a marked package (directly or through a
 *   Provides); otherwise its possible solutions are tried in order until one installs:
 *   per alternative the candidates that satisfy it (the package itself and its providers)
 *   sorted by apt's CompareProviders (protected, installed, the package named by the
 *   dependency, Essential, then higher Priority, then the later apt package ID); candidates
 *   already installed by an earlier stage come first across all alternatives.
 * - Dependencies are followed depth-first in field order (Pre-Depends, then Depends).
 * - Before a package's dependencies are marked, every Pre-Depends/Depends group must have
 *   some candidate at all (IsInstallOkDependenciesSatisfiableByCandidates).
 * - A package that fails is unmarked on its own (its already marked dependencies stay, as
 *   in apt's MarkInstall_DiscardInstall) and the next solution is tried.
 * - Requested packages are "protected": their critical dependencies with exactly one
 *   possible solution become protected too, recursively, which also fixes the order in
 *   which apt walks the graph.
 * - Conflicts/Breaks (our simplification): a package that conflicts with a marked one, or
 *   that a marked one conflicts with, fails to install, so the next alternative is tried.
 *   apt would instead unmark the earlier package and call its problem resolver.
 */

export type DependencyField = 'Pre-Depends' | 'Depends';

export interface Attempt {
  candidate: BinaryPackage;
  failure: Failure | undefined;
}

/** Why a package could not be marked for installation. */
export type Failure =
  | { kind: 'excluded'; pkg: BinaryPackage }
  | { kind: 'version'; pkg: BinaryPackage; selected: BinaryPackage }
  | {
      kind: 'conflict';
      pkg: BinaryPackage;
      /** The package whose Conflicts/Breaks field holds `rel`. */
      owner: BinaryPackage;
      /** The other side: the package `rel` matches. */
      target: BinaryPackage;
      rel: Relation;
      field: 'Conflicts' | 'Breaks';
    }
  | {
      kind: 'dependency';
      pkg: BinaryPackage;
      field: DependencyField;
      group: RelationGroup;
      /** Solutions tried, in order; empty when no candidate satisfies the group at all. */
      attempts: Attempt[];
    };

interface Mark {
  pkg: BinaryPackage;
  /** Installed by an earlier stage (apt's CurrentVer). */
  installed: boolean;
  /** Who pulled it in; undefined for requested packages. */
  parent: string | undefined;
}

interface ConflictEntry {
  owner: BinaryPackage;
  rel: Relation;
  field: 'Conflicts' | 'Breaks';
}

export class Solver {
  private readonly universe: Universe;
  private readonly marks = new Map<string, Mark>();
  private readonly markedProviders = new Map<string, ProviderEntry[]>();
  private readonly conflictIndex = new Map<string, ConflictEntry[]>();
  private readonly protectedNames = new Set<string>();
  private readonly failures = new Map<string, Failure>();

  constructor(universe: Universe) {
    this.universe = universe;
  }

  /**
   * One apt run. `install`: mark every root, then resolve each root whose dependencies are
   * not yet met, in apt package order. `dist-upgrade`: install each root with its
   * dependencies in turn, unprotected. Returns the roots that ended up missing or broken.
   */
  runStage(kind: 'install' | 'dist-upgrade', roots: readonly BinaryPackage[]): BinaryPackage[] {
    const ordered = [...roots].sort((a, b) => this.universe.order(a.name) - this.universe.order(b.name));
    if (kind === 'install') {
      for (const pkg of roots) {
        if (this.markInstall(pkg, false, true, undefined)) this.protectedNames.add(pkg.name);
      }
      for (const pkg of ordered) {
        const mark = this.marks.get(pkg.name);
        if (mark?.pkg === pkg && !mark.installed && this.brokenGroup(pkg) !== undefined) {
          this.markInstall(pkg, true, true, undefined);
        }
      }
    } else {
      for (const pkg of ordered) this.markInstall(pkg, true, false, undefined);
    }
    const bad = roots.filter((pkg) => this.marks.get(pkg.name)?.pkg !== pkg || this.brokenGroup(pkg));
    for (const mark of this.marks.values()) mark.installed = true;
    this.protectedNames.clear();
    return bad;
  }

  selected(): BinaryPackage[] {
    return [...this.marks.values()].map((m) => m.pkg);
  }

  isSelected(name: string): boolean {
    return this.marks.has(name);
  }

  failureOf(name: string): Failure | undefined {
    return this.failures.get(name);
  }

  /** Selected packages whose dependencies are not met (none after a successful stage). */
  brokenPackages(): BinaryPackage[] {
    return this.selected().filter((pkg) => this.brokenGroup(pkg) !== undefined);
  }

  /** The first Pre-Depends/Depends group of `pkg` that no marked package satisfies. */
  brokenGroup(pkg: BinaryPackage): { field: DependencyField; group: RelationGroup } | undefined {
    for (const [field, group] of criticalGroups(pkg)) {
      const atoms = this.applicable(group);
      if (atoms.length > 0 && !atoms.some((rel) => this.satisfiedByMarked(rel))) return { field, group };
    }
    return undefined;
  }

  /** `root → … → name`: how `name` came to be selected (or attempted). */
  chainOf(name: string): string[] {
    const chain = [name];
    const seen = new Set(chain);
    let parent = this.marks.get(name)?.parent;
    while (parent !== undefined && !seen.has(parent)) {
      chain.unshift(parent);
      seen.add(parent);
      parent = this.marks.get(parent)?.parent;
    }
    return chain;
  }

  /** The relations of a group that apply to this architecture (restriction lists). */
  applicable(group: readonly Relation[]): Relation[] {
    return group.filter((rel) => archRestrictionAllows(rel, this.universe.arch));
  }

  satisfiedByMarked(rel: Relation): boolean {
    const mark = this.marks.get(rel.name);
    if (mark && this.universe.satisfiesDirectly(rel, mark.pkg)) return true;
    const entries = this.markedProviders.get(rel.name);
    return entries?.some((entry) => this.universe.provideSatisfies(rel, entry)) === true;
  }

  private markInstall(
    pkg: BinaryPackage,
    autoInst: boolean,
    fromUser: boolean,
    parent: string | undefined,
  ): boolean {
    const mark = this.marks.get(pkg.name);
    const isProtected = this.protectedNames.has(pkg.name);
    if (mark && mark.pkg !== pkg) return this.fail({ kind: 'version', pkg, selected: mark.pkg });
    if (mark && !isProtected) return true;
    if (this.universe.excluded.has(pkg.name)) return this.fail({ kind: 'excluded', pkg });
    if (autoInst && !mark?.installed) {
      for (const [field, group] of criticalGroups(pkg)) {
        const atoms = this.applicable(group);
        if (atoms.length === 0) continue;
        const possible = atoms.some(
          (rel) => this.satisfiedByMarked(rel) || this.universe.solutionsOf(rel).length > 0,
        );
        if (!possible) return this.fail({ kind: 'dependency', pkg, field, group, attempts: [] });
      }
    }
    const added = mark === undefined;
    if (added) {
      const conflict = this.conflictWith(pkg);
      if (conflict) return this.fail(conflict);
      this.addMark(pkg, parent);
    }
    if (!autoInst) return true;

    const failEarly = !isProtected && !fromUser;
    // apt protects a package while its own dependencies are marked (ScopedProtected).
    if (!isProtected) this.protectedNames.add(pkg.name);
    let failed = false;
    try {
      for (const [field, group] of criticalGroups(pkg)) {
        const atoms = this.applicable(group);
        if (atoms.length === 0) continue;
        if (atoms.some((rel) => this.satisfiedByMarked(rel))) {
          if (!isProtected) continue;
          // Propagate protection to a satisfied dependency that has only one possible solution.
          const solutions = this.solutions(atoms, false);
          const only = solutions.length === 1 ? solutions[0]! : undefined;
          if (!only || this.protectedNames.has(only.name)) continue;
          this.protectedNames.add(only.name);
          if (!this.markInstall(only, true, false, pkg.name)) failed = true;
          continue;
        }
        const solutions = this.solutions(atoms, true);
        const attempts: Attempt[] = [];
        let found = false;
        for (const candidate of solutions) {
          if (isProtected && solutions.length === 1) {
            if (!this.markInstall(candidate, false, false, pkg.name)) {
              attempts.push({ candidate, failure: this.failures.get(candidate.name) });
              continue;
            }
            this.protectedNames.add(candidate.name);
          }
          if (!this.markInstall(candidate, true, false, pkg.name)) {
            attempts.push({ candidate, failure: this.failures.get(candidate.name) });
            continue;
          }
          found = true;
          break;
        }
        if (!found) {
          this.failures.set(pkg.name, { kind: 'dependency', pkg, field, group, attempts });
          failed = true;
          if (failEarly) break;
        }
      }
    } finally {
      if (!isProtected) this.protectedNames.delete(pkg.name);
    }
    if (failed && failEarly && added) this.removeMark(pkg);
    return !failed;
  }

  private fail(failure: Failure): false {
    this.failures.set(failure.pkg.name, failure);
    return false;
  }

  /**
   * apt's getAllPossibleSolutions: per alternative, the satisfying candidates (sorted by
   * CompareProviders when `sorted`), installed ones hoisted first; protected packages that
   * are not being installed are dropped.
   */
  private solutions(atoms: readonly Relation[], sorted: boolean): BinaryPackage[] {
    const installed: BinaryPackage[] = [];
    const fresh: BinaryPackage[] = [];
    for (const rel of atoms) {
      const list = this.universe.solutionsOf(rel);
      if (sorted && list.length > 1) list.sort((a, b) => this.compareProviders(rel, a, b));
      for (const pkg of list) (this.marks.get(pkg.name)?.installed ? installed : fresh).push(pkg);
    }
    let all = installed.concat(fresh);
    if (!sorted) all.sort((a, b) => this.universe.order(a.name) - this.universe.order(b.name));
    all = all.filter((pkg, i) => i === 0 || all[i - 1] !== pkg);
    return all.filter((pkg) => !(this.protectedNames.has(pkg.name) && !this.marks.has(pkg.name)));
  }

  /** apt's CompareProviders, reduced to one architecture: negative when `a` is preferred. */
  private compareProviders(rel: Relation, a: BinaryPackage, b: BinaryPackage): number {
    const prefer = (x: boolean, y: boolean) => (x === y ? 0 : x ? -1 : 1);
    return (
      prefer(this.protectedNames.has(a.name), this.protectedNames.has(b.name)) ||
      prefer(this.marks.get(a.name)?.installed === true, this.marks.get(b.name)?.installed === true) ||
      prefer(a.name === rel.name, b.name === rel.name) ||
      prefer(this.universe.isEssential(a.name), this.universe.isEssential(b.name)) ||
      priorityRank(a.priority) - priorityRank(b.priority) ||
      this.universe.order(b.name) - this.universe.order(a.name)
    );
  }

  /** The conflict that forbids marking `pkg`, in either direction, if any. */
  private conflictWith(pkg: BinaryPackage): Failure | undefined {
    const u = this.universe;
    for (const [field, list] of [
      ['Conflicts', pkg.conflicts],
      ['Breaks', pkg.breaks],
    ] as const) {
      for (const rel of list) {
        if (!archRestrictionAllows(rel, u.arch)) continue;
        const mark = this.marks.get(rel.name);
        if (mark && mark.pkg.name !== pkg.name && u.satisfiesDirectly(rel, mark.pkg)) {
          return { kind: 'conflict', pkg, owner: pkg, target: mark.pkg, rel, field };
        }
        for (const entry of this.markedProviders.get(rel.name) ?? []) {
          if (entry.pkg.name !== pkg.name && u.provideSatisfies(rel, entry)) {
            return { kind: 'conflict', pkg, owner: pkg, target: entry.pkg, rel, field };
          }
        }
      }
    }
    const names = [pkg.name, ...pkg.provides.map((p) => p.name)];
    for (const name of names) {
      for (const { owner, rel, field } of this.conflictIndex.get(name) ?? []) {
        if (owner.name === pkg.name) continue;
        const hit =
          name === pkg.name
            ? u.satisfiesDirectly(rel, pkg)
            : pkg.provides.some(
                (provide) => provide.name === name && u.provideSatisfies(rel, { pkg, provide }),
              );
        if (hit) return { kind: 'conflict', pkg, owner, target: pkg, rel, field };
      }
    }
    return undefined;
  }

  private addMark(pkg: BinaryPackage, parent: string | undefined): void {
    this.marks.set(pkg.name, { pkg, installed: false, parent });
    for (const provide of pkg.provides) {
      const entry = { pkg, provide };
      const list = this.markedProviders.get(provide.name);
      if (list) list.push(entry);
      else this.markedProviders.set(provide.name, [entry]);
    }
    for (const [field, list] of [
      ['Conflicts', pkg.conflicts],
      ['Breaks', pkg.breaks],
    ] as const) {
      for (const rel of list) {
        const entry = { owner: pkg, rel, field };
        const entries = this.conflictIndex.get(rel.name);
        if (entries) entries.push(entry);
        else this.conflictIndex.set(rel.name, [entry]);
      }
    }
  }

  private removeMark(pkg: BinaryPackage): void {
    this.marks.delete(pkg.name);
    for (const provide of pkg.provides) {
      const list = this.markedProviders.get(provide.name);
      if (list)
        this.markedProviders.set(
          provide.name,
          list.filter((e) => e.pkg !== pkg),
        );
    }
    for (const rel of [...pkg.conflicts, ...pkg.breaks]) {
      const entries = this.conflictIndex.get(rel.name);
      if (entries)
        this.conflictIndex.set(
          rel.name,
          entries.filter((e) => e.owner !== pkg),
        );
    }
  }
}

export function criticalGroups(pkg: BinaryPackage): [DependencyField, RelationGroup][] {
  const groups: [DependencyField, RelationGroup][] = [];
  for (const group of pkg.preDepends) groups.push(['Pre-Depends', group]);
  for (const group of pkg.depends) groups.push(['Depends', group]);
  return groups;
}

/** `[amd64 !i386]` restriction lists (rare in binary indexes): does `arch` keep the atom? */
function archRestrictionAllows(rel: Relation, arch: string): boolean {
  const list = rel.archRestriction;
  if (list === undefined || list.length === 0) return true;
  const negated = list.every((a) => a.startsWith('!'));
  return negated ? !list.includes(`!${arch}`) : list.includes(arch);
}
