import { z } from 'zod';
import { type Recipe, VARIANTS } from './types.js';

/**
 * The shape of a recipe, and the only place it is written down: `parse.ts` validates
 * against it, `json-schema.ts` exports it for editors, and `types.ts` names its output.
 *
 * Every object is strict (an unknown field is an error, because a misspelt field that is
 * silently ignored builds the wrong tree). The schema checks the recipe *after* handlebars
 * rendering, so patterns apply to the values rootcast works with, not to `{{…}}` text.
 * Each field carries a description (and examples where they help): they become the JSON
 * Schema's documentation and the hints for missing fields.
 */

export const DISTROS = ['debian'] as const;
export const ARCHITECTURES = [
  'amd64',
  'arm64',
  'i386',
  'armhf',
  'armel',
  'ppc64el',
  's390x',
  'riscv64',
  'mips64el',
] as const;

/** Template names are also directory and tag names: lowercase, no slashes, no leading dot. */
export const RECIPE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]*$/;
/** Versions become the tag of an OCI reference (`name:version`), so they follow OCI's tag grammar. */
export const RECIPE_VERSION_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const RELEASE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const TEMPLATE_REF_PATTERN = /^[a-z0-9][a-z0-9._-]*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$/;
const RECIPE_REF_PATTERN = /^[^\s:]+\.ya?ml$/;
const VALUE_KEY_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]*(\.[A-Za-z0-9_][A-Za-z0-9_-]*)*$/;
const NO_SPACE_PATTERN = /^\S+$/;
const MODE_PATTERN = /^[0-7]{3,4}$/;

const nonEmpty = () => z.string().min(1, { error: 'must not be empty' });

const sourceSchema = z
  .strictObject({
    uri: nonEmpty().meta({
      description:
        'Base URI of the repository (the directory holding dists/ and pool/). Usually a mirror variable, so the recipe names no host.',
      examples: ['{{mirror.debian}}', '{{mirror.debian-security}}'],
    }),
    suites: z
      .array(nonEmpty().regex(NO_SPACE_PATTERN, { error: 'must not contain spaces' }))
      .min(1, { error: 'must list at least one suite' })
      .meta({
        description: 'Suites (dists/<suite>) to read from this URI.',
        examples: [['{{release}}', '{{release}}-updates'], ['{{release}}-security']],
      }),
    components: z
      .array(nonEmpty().regex(NO_SPACE_PATTERN, { error: 'must not contain spaces' }))
      .min(1, { error: 'must list at least one component' })
      .default(['main'])
      .meta({ description: 'Components of each suite to read.', examples: [['main'], ['main', 'contrib']] }),
    keyring: nonEmpty().meta({
      description:
        "OpenPGP keyring (binary or armored) that must have signed each suite's Release file. Relative paths are read from the recipe's directory.",
      examples: ['/usr/share/keyrings/debian-archive-keyring.gpg'],
    }),
  })
  .meta({
    title: 'Source',
    description: 'One signed repository: a URI, its suites and components, and its keyring.',
  });

const fileSchema = z
  .strictObject({
    path: nonEmpty()
      .regex(/^\//, { error: 'must be an absolute path' })
      .refine((p) => !p.split('/').includes('..'), { error: 'must not contain ".."' })
      .meta({ description: 'Absolute path of the file inside the tree.', examples: ['/etc/hostname'] }),
    template: nonEmpty()
      .optional()
      .meta({
        description:
          "Handlebars template under templates/ rendered with the recipe's values. Exactly one of template and content.",
        examples: ['hostname.hbs'],
      }),
    content: z
      .string()
      .optional()
      .meta({ description: 'Literal file content. Exactly one of template and content.' }),
    owner: z
      .union([nonEmpty(), z.number().int().nonnegative()])
      .optional()
      .meta({ description: 'Owner: a user name of the tree or a numeric uid (default root).' }),
    group: z
      .union([nonEmpty(), z.number().int().nonnegative()])
      .optional()
      .meta({ description: 'Group: a group name of the tree or a numeric gid (default root).' }),
    mode: z
      .string()
      .regex(MODE_PATTERN, { error: 'must be 3 or 4 octal digits' })
      .optional()
      .meta({
        description: 'Permission bits as a quoted octal string (default "0644").',
        examples: ['0644'],
      }),
  })
  .superRefine((file, ctx) => {
    if (file.template !== undefined && file.content !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['content'],
        message: 'a file takes template or content, not both',
        params: { whole: true },
      });
    } else if (file.template === undefined && file.content === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message: 'a file needs template or content',
        params: { whole: true },
      });
    }
  })
  .meta({ title: 'File', description: 'A file written into the tree after the packages are installed.' });

const stepSchema = z
  .strictObject({
    run: nonEmpty().meta({
      description: 'Shell command run with /bin/sh -c inside the tree.',
      examples: ['apt-get clean'],
    }),
    network: z
      .boolean()
      .default(false)
      .meta({ description: 'Whether the step may reach the network (default false: no network).' }),
  })
  .meta({ title: 'Step', description: 'A command run in a sandbox chrooted into the tree, after files.' });

const packagesSchema = z
  .strictObject({
    install: z
      .array(nonEmpty().regex(NO_SPACE_PATTERN, { error: 'must not contain spaces' }))
      .default([])
      .meta({
        description: 'Packages to install on top of the variant, with their dependencies.',
        examples: [['ca-certificates']],
      }),
    exclude: z
      .array(nonEmpty().regex(NO_SPACE_PATTERN, { error: 'must not contain spaces' }))
      .default([])
      .meta({ description: 'Packages the variant would bring that must be left out.' }),
  })
  .meta({ title: 'Packages', description: 'The package set on top of the variant.' });

export const recipeSchema = z
  .strictObject({
    name: z
      .string()
      .regex(RECIPE_NAME_PATTERN, { error: 'must be lowercase letters, digits, ".", "_" or "-"' })
      .meta({
        description: 'Template name: lowercase letters, digits, ".", "_", "-".',
        examples: ['debian-12-minbase'],
      }),
    version: z
      .string()
      .regex(RECIPE_VERSION_PATTERN, { error: 'must be letters, digits, ".", "_" or "-" (an OCI tag)' })
      .regex(/^(?!latest$)/, { error: 'must not be "latest": every build also tags <name>:latest itself' })
      .meta({
        description: 'Template version (an OCI tag). Quote it: YAML reads 1.0 as a number.',
        examples: ['1.0'],
      }),
    distro: z.enum(DISTROS).meta({ description: 'Distribution family.', examples: ['debian'] }),
    release: z
      .string()
      .regex(RELEASE_PATTERN, { error: 'must be a codename without spaces or slashes' })
      .meta({ description: 'Release codename.', examples: ['bookworm', 'trixie'] }),
    arch: z
      .enum(ARCHITECTURES)
      .meta({ description: 'Architecture of the tree, as the distribution names it.', examples: ['amd64'] }),
    variant: z.enum(VARIANTS).meta({
      description:
        'Base package set, as mmdebstrap means it: essential, apt (essential + apt), minbase (= required), required, important, standard.',
      examples: ['minbase'],
    }),
    from: z
      .string()
      .refine((value) => TEMPLATE_REF_PATTERN.test(value) || RECIPE_REF_PATTERN.test(value), {
        error: 'must name a template as name or name:version, or a recipe file ending in .yaml',
      })
      .optional()
      .meta({
        description:
          'Parent to build on: a template in the store (name or name:version), or a recipe file (a path ending in .yaml, relative to this recipe), built first when needed.',
        examples: ['debian-12-minbase:1.0', './debian-12-minbase.yaml'],
      }),
    sources: z
      .array(sourceSchema)
      .min(1, { error: 'must list at least one source' })
      .meta({ description: 'Signed repositories to resolve and fetch packages from.' }),
    packages: packagesSchema.default({ install: [], exclude: [] }),
    files: z.array(fileSchema).default([]).meta({ description: 'Files written into the tree, in order.' }),
    steps: z
      .array(stepSchema)
      .default([])
      .meta({ description: 'Commands run in the tree, in order, after files.' }),
    labels: z
      .record(z.string().min(1), z.string())
      .default({})
      .meta({
        description:
          'OCI image labels written into the template config (config.Labels), kept by every export.',
        examples: [{ 'org.opencontainers.image.description': 'Debian 12 with nginx' }],
      }),
    values: z
      .record(
        z.string().regex(VALUE_KEY_PATTERN, { error: 'must be a variable name like student.name' }),
        z.string(),
      )
      .default({})
      .meta({
        description:
          'Default values of variables ({{student.name}}), used when neither --set nor ROOTCAST_VAR_* gives one. Keys are dotted names.',
        examples: [{ 'student.name': 'student' }],
      }),
  })
  .meta({
    $id: 'urn:rootcast:recipe:1',
    title: 'rootcast recipe',
    description:
      'What a template is made of: distribution, release, architecture, variant, signed sources, packages, files and steps. Strings may use handlebars variables ({{release}}, {{mirror.debian}}).',
  });

/** The recipe as written (defaults not applied). */
export type RecipeInput = z.input<typeof recipeSchema>;
/** The recipe after validation, defaults applied. */
export type RecipeOutput = z.output<typeof recipeSchema>;

/**
 * Compile-time proof that the schema's output is a `Recipe`: if the schema and
 * `types.ts` drift apart, this line stops `tsc`.
 */
export const SCHEMA_OUTPUT_IS_RECIPE: RecipeOutput extends Recipe ? true : never = true;

/** The fields whose values are also handlebars variables (`{{release}}`). */
export const RECIPE_FIELD_VARIABLES = ['name', 'version', 'distro', 'release', 'arch', 'variant'] as const;
