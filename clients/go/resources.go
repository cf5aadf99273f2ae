package dukat

import dukatv1 "github.com/dukat-dev/dukat/clients/go/gen/dukat/v1"

// ResourceType is a kind of resource. The built-in kinds have a capacity of 1.0 (the whole
// host) unless the daemon is told otherwise (--resource); a Custom resource is named and
// configured on the daemon.
type ResourceType int32

// The kinds of resources; the numbers are the wire's (job.proto).
const (
	ResourceCPU     ResourceType = 1
	ResourceMemory  ResourceType = 2
	ResourceNetwork ResourceType = 3
	ResourceDisk    ResourceType = 4
	ResourceGPU     ResourceType = 5
	ResourceCustom  ResourceType = 6
)

var resourceTypeNames = map[ResourceType]string{
	ResourceCPU: "CPU", ResourceMemory: "MEMORY", ResourceNetwork: "NETWORK",
	ResourceDisk: "DISK", ResourceGPU: "GPU", ResourceCustom: "CUSTOM",
}

// String is the kind's name as the engine spells it ("MEMORY").
func (t ResourceType) String() string { return enumName(resourceTypeNames, t, "ResourceType") }

// Resource is an amount of one resource that a task holds while it runs: positive, at least
// 0.001, and no more than the resource's capacity (a task that could never run is rejected at
// Submit). Make one with CPU, Memory, Network, Disk, GPU or Custom.
type Resource struct {
	Type   ResourceType
	Amount float64
	Name   string // the resource's name: Custom only
}

// CPU is a share of the host's CPU (1.0: all of it, by default).
func CPU(amount float64) Resource { return Resource{Type: ResourceCPU, Amount: amount} }

// Memory is a share of the host's memory.
func Memory(amount float64) Resource { return Resource{Type: ResourceMemory, Amount: amount} }

// Network is a share of the host's network bandwidth.
func Network(amount float64) Resource { return Resource{Type: ResourceNetwork, Amount: amount} }

// Disk is a share of the host's disk bandwidth.
func Disk(amount float64) Resource { return Resource{Type: ResourceDisk, Amount: amount} }

// GPU is a share of the host's GPUs.
func GPU(amount float64) Resource { return Resource{Type: ResourceGPU, Amount: amount} }

// Custom is an amount of a resource configured on the daemon by name (--resource
// licence=4): licence seats, a rate-limited API; one of capacity 4 is a concurrency group.
func Custom(name string, amount float64) Resource {
	return Resource{Type: ResourceCustom, Amount: amount, Name: name}
}

func (r Resource) toProto() *dukatv1.ResourceRequirement {
	return &dukatv1.ResourceRequirement{
		Type: dukatv1.ResourceType(r.Type), Amount: r.Amount, Name: r.Name,
	}
}
