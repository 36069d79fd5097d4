/** A berth server's API called directly, for tests and benchmarks (no test runner needed). */

/**
 * One call of a berth server's API with a bearer token, JSON in (when there is a body): the
 * request every test and benchmark client of the API shares; the answer is theirs to read.
 */
export function apiRequest(
  url: string,
  token: string,
  method: string,
  route: string,
  body?: unknown,
): Promise<Response> {
  return fetch(`${url}/api/v1${route}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
