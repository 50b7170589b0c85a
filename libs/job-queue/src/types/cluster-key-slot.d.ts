/** `cluster-key-slot` (the hash slot function ioredis uses) ships no types of its own. */
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0..16383) of `key`, honouring its `{hash tag}`. */
  export default function calculateSlot(key: string | Buffer): number;
}
