/**
 * An image's platform, parsed from what its configuration says (`os`, `architecture`,
 * `variant`). Those values come from whoever built the image, so they are data from a tenant:
 * berth only accepts the operating systems and architectures that Go (and so Docker, Terraform
 * and OpenTofu) knows, under their usual aliases, and refuses anything else. The release name
 * (`linux_amd64`) is then safe to use as a path segment and in a file name.
 */

/** GOOS values. */
export const KNOWN_OS = [
  'aix',
  'android',
  'darwin',
  'dragonfly',
  'freebsd',
  'illumos',
  'ios',
  'linux',
  'netbsd',
  'openbsd',
  'plan9',
  'solaris',
  'windows',
] as const;

/** GOARCH values. */
export const KNOWN_ARCHITECTURES = [
  '386',
  'amd64',
  'arm',
  'arm64',
  'loong64',
  'mips',
  'mips64',
  'mips64le',
  'mipsle',
  'ppc64',
  'ppc64le',
  'riscv64',
  's390x',
  'wasm',
] as const;

/** Names other tools use for the same architectures (uname, Debian). */
const ARCHITECTURE_ALIASES: Record<string, (typeof KNOWN_ARCHITECTURES)[number]> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  aarch64: 'arm64',
  i386: '386',
  i686: '386',
  armhf: 'arm',
  armel: 'arm',
};

/** Variants the OCI image spec names, per architecture. */
const VARIANTS: Record<string, readonly string[]> = {
  arm: ['v5', 'v6', 'v7', 'v8'],
  arm64: ['v8', 'v8.0', 'v8.1', 'v8.2', 'v8.3', 'v8.4', 'v8.5', 'v9'],
  amd64: ['v1', 'v2', 'v3', 'v4'],
};

export interface Platform {
  os: (typeof KNOWN_OS)[number];
  architecture: (typeof KNOWN_ARCHITECTURES)[number];
  variant: string | null;
}

/** Why text from an image's configuration is shown in a message: printable, short. */
function shown(value: string): string {
  const printable = JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return printable;
}

/**
 * Parses an image configuration's platform fields. Null when os or architecture is missing (the
 * caller then assumes the host's); an error, naming the value, when either is not one berth knows.
 */
export function parsePlatform(
  os: string | undefined | null,
  architecture: string | undefined | null,
  variant?: string | null,
): { platform: Platform | null } | { error: string } {
  if (!os || !architecture) return { platform: null };
  const osName = os.toLowerCase();
  if (!(KNOWN_OS as readonly string[]).includes(osName)) {
    return {
      error: `operating system ${shown(os)} is not one berth knows (${KNOWN_OS.join(', ')})`,
    };
  }
  const archName = ARCHITECTURE_ALIASES[architecture.toLowerCase()] ?? architecture.toLowerCase();
  if (!(KNOWN_ARCHITECTURES as readonly string[]).includes(archName)) {
    return {
      error: `architecture ${shown(architecture)} is not one berth knows (${KNOWN_ARCHITECTURES.join(', ')})`,
    };
  }
  let checkedVariant: string | null = null;
  if (variant) {
    const known = VARIANTS[archName] ?? [];
    if (!known.includes(variant.toLowerCase())) {
      return {
        error: `variant ${shown(variant)} is not one berth knows for ${archName}${known.length ? ` (${known.join(', ')})` : ' (it has none)'}`,
      };
    }
    checkedVariant = variant.toLowerCase();
  }
  return {
    platform: {
      os: osName as Platform['os'],
      architecture: archName as Platform['architecture'],
      variant: checkedVariant,
    },
  };
}

/** The platform as Terraform and OpenTofu name their release files: `linux_amd64`. */
export function releasePlatform(platform: Platform): string {
  return `${platform.os}_${platform.architecture}`;
}

/** Whether a release platform name is made only of known parts (`linux_amd64`). */
export function isReleasePlatform(text: string): boolean {
  const [os, architecture, ...rest] = text.split('_');
  return (
    rest.length === 0 &&
    (KNOWN_OS as readonly string[]).includes(os ?? '') &&
    (KNOWN_ARCHITECTURES as readonly string[]).includes(architecture ?? '')
  );
}
