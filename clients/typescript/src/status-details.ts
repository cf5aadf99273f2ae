// The `grpc-status-details-bin` trailer: a google.rpc.Status whose details may hold a
// google.rpc.BadRequest (the daemon's field violations). Only those two messages are read, so
// they are decoded here by hand (a few fields each) rather than generated from googleapis.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** One thing wrong with a request: the field's path as the request names it
 * (`job.tasks[3].dependencies[0]`) and what is wrong with it. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";

/** The field violations of every BadRequest in a serialized google.rpc.Status; an empty list
 * for bytes that are not one (the status line, which the caller has, is what counts then). */
export function badRequestViolations(statusBytes: Uint8Array): FieldViolation[] {
  try {
    const violations: FieldViolation[] = [];
    for (const [typeUrl, value] of statusDetails(statusBytes)) {
      if (typeUrl === BAD_REQUEST) {
        violations.push(...fieldViolations(value));
      }
    }
    return violations;
  } catch {
    return [];
  }
}

/** google.rpc.Status.details (field 3): each Any as [type_url, value]. */
function statusDetails(bytes: Uint8Array): Array<[string, Uint8Array]> {
  const details: Array<[string, Uint8Array]> = [];
  readFields(bytes, (field, reader) => {
    if (field !== 3) return false;
    let typeUrl = "";
    let value: Uint8Array = new Uint8Array();
    readFields(reader.bytes(), (anyField, any) => {
      if (anyField === 1) typeUrl = any.string();
      else if (anyField === 2) value = any.bytes();
      else return false;
      return true;
    });
    details.push([typeUrl, value]);
    return true;
  });
  return details;
}

/** google.rpc.BadRequest.field_violations (field 1): field (1) and description (2) each. */
function fieldViolations(bytes: Uint8Array): FieldViolation[] {
  const violations: FieldViolation[] = [];
  readFields(bytes, (field, reader) => {
    if (field !== 1) return false;
    let path = "";
    let description = "";
    readFields(reader.bytes(), (violationField, violation) => {
      if (violationField === 1) path = violation.string();
      else if (violationField === 2) description = violation.string();
      else return false;
      return true;
    });
    violations.push({ field: path, description });
    return true;
  });
  return violations;
}

/** Call `read(field, reader)` for each length-delimited field; it reads the value and returns
 * true, or returns false to have it skipped. Fields of other wire types are skipped. */
function readFields(
  bytes: Uint8Array,
  read: (field: number, reader: BinaryReader) => boolean,
): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (wireType !== WireType.LengthDelimited || !read(field, reader)) {
      reader.skip(wireType, field);
    }
  }
}
