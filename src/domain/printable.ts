/**
 * Text a job controls, made safe to print inside one of berth's own lines: control characters
 * (C0, DEL, C1), line and paragraph separators and bidirectional overrides are shown as `\u{…}`,
 * so such text cannot end the line, start a forged one (e.g. around the confirmation prompt),
 * move the cursor, recolour the terminal or reorder what is shown.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(
    UNPRINTABLE,
    (c) => `\\u{${(c.codePointAt(0) as number).toString(16).padStart(4, '0')}}`,
  );
}
